namespace Gpud.Services.Files;

/// <summary>The <c>purpose</c> values OpenAI's Files API accepts on upload, and gpud's own output purpose.</summary>
public static class FilePurposes
{
    public const string FineTune = "fine-tune";
    public const string FineTuneResults = "fine-tune-results";

    /// <summary>What a client may upload with.</summary>
    public static IReadOnlySet<string> Uploadable { get; } =
        new HashSet<string>(StringComparer.Ordinal) { FineTune, "batch", "user_data", "assistants", "vision", "evals" };
}
