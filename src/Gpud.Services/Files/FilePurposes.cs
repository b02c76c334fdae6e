namespace Gpud.Services.Files;

/// <summary>The <c>purpose</c> values OpenAI's Files API accepts on upload, and those of files gpud writes.</summary>
public static class FilePurposes
{
    public const string FineTune = "fine-tune";
    public const string FineTuneResults = "fine-tune-results";
    public const string Batch = "batch";
    public const string BatchOutput = "batch_output";

    /// <summary>What a client may upload with.</summary>
    public static IReadOnlySet<string> Uploadable { get; } =
        new HashSet<string>(StringComparer.Ordinal) { FineTune, Batch, "user_data", "assistants", "vision", "evals" };
}
