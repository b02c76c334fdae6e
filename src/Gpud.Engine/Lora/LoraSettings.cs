namespace Gpud.Engine.Lora;

/// <summary>How LoRA matrices start: PEFT's <c>gaussian</c> (A ~ N(0, 1/r), B = 0) or <c>pissa</c> (top-r SVD of W).</summary>
public enum LoraInit
{
    Gaussian,
    Pissa,
}

/// <summary>One LoRA adapter's shape, as PEFT's LoraConfig names it.</summary>
public sealed record LoraSettings(int Rank, double Alpha, double Dropout = 0, bool UseRslora = false, bool UseDora = false, LoraInit Init = LoraInit.Gaussian)
{
    /// <summary>The projections of a Llama-family block, what <c>"all-linear"</c> means for it.</summary>
    public static IReadOnlyList<string> AllLinear { get; } = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>α/r, or α/√r with rsLoRA (rank-stabilized scaling).</summary>
    public double Scale => UseRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;
}
