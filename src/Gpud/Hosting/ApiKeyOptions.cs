using Gpud.Services.Projects;
using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>
/// <c>Gpud:ApiKeys</c>: a list whose entries are either a key (<c>Gpud__ApiKeys__0=sk-…</c>, project
/// <c>default</c>) or a key bound to a project (<c>Gpud__ApiKeys__0__Key=sk-…</c>, <c>Gpud__ApiKeys__0__Project=team-a</c>).
/// Bound by hand because the configuration binder cannot mix the two shapes.
/// </summary>
public sealed class ApiKeyOptions
{
    public List<ApiKeyEntry> Keys { get; } = [];

    public static void Bind(ApiKeyOptions options, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var entry in configuration.GetSection($"{GpudOptions.Section}:ApiKeys").GetChildren())
        {
            // Some providers give an object entry an empty value of its own, so its children decide the shape.
            options.Keys.Add(entry.GetChildren().Any()
                ? new ApiKeyEntry(entry.Path, entry["Key"] ?? "", entry["Project"] ?? Project.Default)
                : new ApiKeyEntry(entry.Path, entry.Value ?? "", Project.Default));
        }
    }
}

/// <summary>One configured key. <see cref="Path"/> is the configuration path that defined it, for error messages (never the key itself).</summary>
public sealed record ApiKeyEntry(string Path, string Key, string Project);

internal sealed class ApiKeyOptionsValidator : IValidateOptions<ApiKeyOptions>
{
    public const int MinKeyLength = 8;

    public ValidateOptionsResult Validate(string? name, ApiKeyOptions options)
    {
        var failures = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in options.Keys)
        {
            if (entry.Key.Length < MinKeyLength || entry.Key.Any(char.IsWhiteSpace))
                failures.Add($"{entry.Path}: an API key must be at least {MinKeyLength} characters without whitespace.");
            if (!Project.IsValidName(entry.Project))
                failures.Add($"{entry.Path}:Project '{entry.Project}' is not a valid project name (1-64 letters, digits, '-', '_', '.').");
            if (!seen.Add(entry.Key))
                failures.Add($"{entry.Path}: the same API key is configured twice.");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
