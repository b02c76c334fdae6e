using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>The <c>Gpud</c> configuration section (appsettings.json, <c>Gpud__Key</c> env vars, <c>--Gpud:Key=</c>).</summary>
public sealed class GpudOptions
{
    public const string Section = "Gpud";

    /// <summary>Where the database and blobs live. <c>/var/lib/gpud</c> under systemd and in Docker.</summary>
    public string DataDir { get; set; } = "./data";

    /// <summary>Largest file <c>POST /v1/files</c> accepts (OpenAI's limit is 512 MB).</summary>
    public long MaxUploadBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary><c>/readyz</c> fails when the data dir's file system has less free space than this.</summary>
    public long MinFreeDiskBytes { get; set; } = 1L * 1024 * 1024 * 1024;

    public string DatabasePath => Path.Combine(DataDir, "gpud.db");
}

internal sealed class GpudOptionsValidator : IValidateOptions<GpudOptions>
{
    public ValidateOptionsResult Validate(string? name, GpudOptions options)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.DataDir))
            failures.Add("Gpud:DataDir must name a directory.");
        if (options.MaxUploadBytes is < 1 or > 1L << 40)
            failures.Add($"Gpud:MaxUploadBytes must be between 1 and {1L << 40} bytes (got {options.MaxUploadBytes}).");
        if (options.MinFreeDiskBytes < 0)
            failures.Add($"Gpud:MinFreeDiskBytes must not be negative (got {options.MinFreeDiskBytes}).");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
