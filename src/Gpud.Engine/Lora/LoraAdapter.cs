using Gpud.Engine.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// A LoRA adapter on one frozen <see cref="BaseLinear"/>: y = W x + b + s·B(A(dropout(x))), with s = α/r (α/√r for
/// rsLoRA). With DoRA the output is re-scaled row-wise by a learned magnitude m over the norm of the adapted weight,
/// exactly as PEFT's DoraLinearLayer computes it (the norm is detached, per the DoRA paper §4.3). Adapter weights are
/// float32 whatever the base dtype (they and their optimizer state are what training updates); the result is returned
/// in the base dtype.
/// </summary>
public sealed class LoraAdapter : nn.Module
{
    private readonly double _dropout;

    public LoraAdapter(BaseLinear layer, LoraSettings settings, Generator? generator = null) : this(layer, settings, generator, null)
    {
    }

    /// <summary>An adapter with given weights (a saved adapter being loaded): A [r, in], B [out, r], magnitude [out].</summary>
    public static LoraAdapter FromWeights(BaseLinear layer, LoraSettings settings, Tensor a, Tensor b, Tensor? magnitude) =>
        new(layer, settings, null, (a, b, magnitude));

    private LoraAdapter(BaseLinear layer, LoraSettings settings, Generator? generator, (Tensor A, Tensor B, Tensor? Magnitude)? weights) : base("lora")
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(settings);
        Settings = settings;
        _dropout = settings.Dropout;
        var device = layer.Weight.device;
        using var noGrad = no_grad();
        Tensor a, b;
        if (weights is { } given)
        {
            // Copies: the caller owns (and disposes) the tensors it passed.
            (a, b) = (given.A.to(ScalarType.Float32, device, copy: true), given.B.to(ScalarType.Float32, device, copy: true));
        }
        else if (settings.Init == LoraInit.Pissa)
        {
            (a, b) = PissaInit(layer, settings);
            // Kept to express the trained adapter relative to the original weight on export (see PeftAdapter).
            InitialA = a.clone();
            InitialB = b.clone();
        }
        else
        {
            // Drawn on the CPU (TorchSharp's generators are CPU-only), so a seed gives the same A on every device.
            var drawn = normal(0, 1.0 / settings.Rank, [settings.Rank, layer.InFeatures], ScalarType.Float32, generator: generator);
            a = device.type == DeviceType.CPU ? drawn : drawn.to(device, disposeAfter: true);
            b = zeros([layer.OutFeatures, settings.Rank], ScalarType.Float32, device);
        }
        A = new Parameter(a);
        B = new Parameter(b);
        register_parameter("lora_A", A);
        register_parameter("lora_B", B);
        if (settings.UseDora)
        {
            using var scope = NewDisposeScope();
            var magnitude = weights?.Magnitude?.to(ScalarType.Float32, device, copy: true) ?? AdaptedWeight(layer).norm(1);
            Magnitude = new Parameter(magnitude.MoveToOuterDisposeScope());
            register_parameter("lora_magnitude_vector", Magnitude);
        }
    }

    public LoraSettings Settings { get; }

    /// <summary>[rank, in]</summary>
    public Parameter A { get; }

    /// <summary>[out, rank]</summary>
    public Parameter B { get; }

    /// <summary>DoRA's magnitude vector [out], or null.</summary>
    public Parameter? Magnitude { get; }

    /// <summary>PiSSA's starting A and B (not trained), or null for Gaussian init.</summary>
    public Tensor? InitialA { get; }

    public Tensor? InitialB { get; }

    public Tensor Forward(Tensor input, BaseLinear layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var scope = NewDisposeScope();
        if (Magnitude is not null) return DoraForward(input, layer).MoveToOuterDisposeScope();
        return nn.functional.linear(input, layer.Weight, layer.Bias).add_(Delta(input), Settings.Scale).MoveToOuterDisposeScope();
    }

    /// <summary>DoRA re-scales the whole output, so its adapter cannot be added as a separate term (<see cref="Delta"/>).</summary>
    public bool IsAdditive => Magnitude is null;

    /// <summary>
    /// B(A(dropout(x))) in the activations' dtype, before the scale: what this adapter adds to the base output. As
    /// autocast runs a bf16 model, no float32 copy of each projection's input is made (and kept for backward); gradients
    /// still land in float32, through the casts or through the optimizer's compute copies.
    /// </summary>
    public Tensor Delta(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!IsAdditive) throw new InvalidOperationException("A DoRA adapter has no additive delta.");
        using var scope = NewDisposeScope();
        var (a, b) = Weights(input.dtype);
        return nn.functional.linear(nn.functional.linear(DropsOut ? Dropout(input) : input, a), b).MoveToOuterDisposeScope();
    }

    /// <summary>Whether this forward pass draws a dropout mask (then the adapter's input differs from the base's).</summary>
    public bool DropsOut => training && _dropout > 0;

    /// <summary>A and B in <paramref name="dtype"/>: the optimizer's compute copies when they are in it, else casts.</summary>
    public (Tensor A, Tensor B) Weights(ScalarType dtype) =>
        _computeCopies is { } copies && copies.A.dtype == dtype ? copies : (A.to_type(dtype), B.to_type(dtype));

    private (Tensor A, Tensor B)? _computeCopies;

    /// <summary>
    /// Multiply by these copies of A and B (the optimizer's, in the compute dtype) instead of casting A and B in every
    /// forward pass; null goes back to casting. The trainer sets them for a run and clears them after it.
    /// </summary>
    public void UseComputeCopies(Tensor? a, Tensor? b) => _computeCopies = a is not null && b is not null ? (a, b) : null;

    /// <summary>DoRA keeps the float32 arithmetic PEFT uses for it (its bf16 behaviour is not validated here).</summary>
    private Tensor DoraForward(Tensor input, BaseLinear layer)
    {
        var baseDtype = input.dtype;
        var result = nn.functional.linear(input, layer.Weight, layer.Bias).to_type(ScalarType.Float32);
        var x = input.to_type(ScalarType.Float32);
        var dropped = training && _dropout > 0 ? Dropout(x) : x;
        var lora = nn.functional.linear(nn.functional.linear(dropped, A), B) * Settings.Scale;
        var weightNorm = AdaptedWeight(layer).norm(1).detach();
        var magnitudeScale = Magnitude! / weightNorm;
        // PEFT: the base term is recomputed from the dropped-out input when dropout is active, else reused (minus bias).
        var baseWithoutBias = ReferenceEquals(dropped, x)
            ? (layer.Bias is null ? result : result - layer.Bias.to_type(ScalarType.Float32))
            : nn.functional.linear(dropped, layer.Weight.to_type(ScalarType.Float32));
        var dora = (magnitudeScale - 1) * baseWithoutBias + magnitudeScale * lora;
        return (result + dora).to_type(baseDtype);
    }

    /// <summary>
    /// The generator dropout draws from. The trainer sets one per job so that concurrent jobs (one per device) and
    /// anything else in the process never share libtorch's global generator: same seed, same masks, and a checkpoint
    /// can save and restore exactly this state.
    /// </summary>
    public Generator? DropoutGenerator { get; set; }

    private Tensor Dropout(Tensor x)
    {
        var keep = CounterRandom.Uniform(x.shape, x.device, DropoutGenerator) >= _dropout;
        return x * keep / (1 - _dropout);
    }

    /// <summary>W + s·BA in float32, [out, in]: the weight this adapter makes, before DoRA's re-scaling.</summary>
    public Tensor AdaptedWeight(BaseLinear layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return layer.Weight.to_type(ScalarType.Float32) + B.matmul(A) * Settings.Scale;
    }

    /// <summary>The single weight equivalent to base + adapter (for merging and for tests).</summary>
    public Tensor MergedWeight(BaseLinear layer)
    {
        using var scope = NewDisposeScope();
        var adapted = AdaptedWeight(layer);
        if (Magnitude is not null) adapted = adapted * (Magnitude / adapted.norm(1)).unsqueeze(1);
        return adapted.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// PiSSA: A and B from the top-r singular vectors of W (each taking √S, divided by the scale so that s·BA is the
    /// top-r part of W), and W replaced by its residual, on W's own device. At step 0 the adapted layer equals the base.
    /// </summary>
    private static (Tensor A, Tensor B) PissaInit(BaseLinear layer, LoraSettings settings)
    {
        using var scope = NewDisposeScope();
        var weight = layer.Weight.to_type(ScalarType.Float32);
        var (u, s, vh) = linalg.svd(weight, fullMatrices: false);
        var r = settings.Rank;
        var sr = (s[..r] / settings.Scale).sqrt();
        var a = sr.unsqueeze(1) * vh[..r];          // diag(√Sr) · Vhᵣ  → [r, in]
        var b = u[.., ..r] * sr.unsqueeze(0);        // Uᵣ · diag(√Sr)   → [out, r]
        var residual = weight - b.matmul(a) * settings.Scale;
        layer.Weight.copy_(residual.to_type(layer.Weight.dtype));
        return (a.contiguous().MoveToOuterDisposeScope(), b.contiguous().MoveToOuterDisposeScope());
    }
}
