namespace Gpud.Services.Projects;

/// <summary>
/// The tenant a request acts for. Every file, job and model belongs to exactly one project; another project's
/// resources do not exist for a caller (404, never 403, so ids cannot be probed).
/// </summary>
public static class Project
{
    /// <summary>The project of unbound keys, and of every caller when no keys are configured.</summary>
    public const string Default = "default";

    /// <summary>Project names appear in model names (<c>ft:base:{project}:…</c>), so they are kept simple.</summary>
    public static bool IsValidName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
