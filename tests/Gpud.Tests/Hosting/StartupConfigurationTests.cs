using System.Diagnostics;
using Gpud.Hosting;
using Gpud.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Gpud.Tests.Hosting;

public sealed class StartupConfigurationTests
{
    [Fact]
    public async Task An_invalid_setting_stops_start_up_with_a_message_naming_the_key()
    {
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() =>
            PipelineHost.StartAsync(dir.Path, new Dictionary<string, string?> { ["Gpud:MaxUploadBytes"] = "-1" }));
        Assert.Contains("Gpud:MaxUploadBytes", e.Message);
    }

    [Fact]
    public async Task A_short_or_misbound_api_key_is_refused_by_its_configuration_path()
    {
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => PipelineHost.StartAsync(dir.Path, new Dictionary<string, string?>
        {
            ["Gpud:ApiKeys:0"] = "short",
            ["Gpud:ApiKeys:1:Key"] = "sk-0123456789",
            ["Gpud:ApiKeys:1:Project"] = "has space",
        }));
        Assert.Contains("Gpud:ApiKeys:0", e.Message);
        Assert.Contains("Gpud:ApiKeys:1:Project", e.Message);
        Assert.DoesNotContain("sk-0123456789", e.Message); // keys never appear in messages
    }

    [Fact]
    public async Task Listening_on_a_public_address_without_keys_is_refused()
    {
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<StartupRefusedException>(() =>
            PipelineHost.StartAsync(dir.Path, new Dictionary<string, string?> { ["urls"] = "http://0.0.0.0:8080" }));
        Assert.Contains("no API keys", e.Message);

        await using var keyed = await PipelineHost.StartAsync(dir.Path,
            new Dictionary<string, string?> { ["urls"] = "http://0.0.0.0:8080", ["Gpud:ApiKeys:0"] = "sk-0123456789abcdef" });
    }

    [Fact]
    public async Task An_unusable_data_dir_is_refused_with_exit_code_78()
    {
        using var dir = new TempDir();
        var file = dir["not-a-directory"];
        await File.WriteAllTextAsync(file, "");

        var (exit, stderr) = await RunDaemonToExitAsync("--urls=http://127.0.0.1:0", $"--Gpud:DataDir={file}");

        Assert.Equal(ExitCodes.Configuration, exit);
        Assert.Contains("gpud: Cannot use the data directory", stderr);
    }

    [Theory]
    [InlineData("--urls=http://0.0.0.0:18089", "gpud: gpud would listen on http://0.0.0.0:18089 with no API keys configured")]
    [InlineData("--Gpud:MaxUploadBytes=-1", "gpud: invalid configuration:")]
    public async Task The_real_daemon_exits_with_78_and_a_reason_instead_of_a_stack_trace(string argument, string expected)
    {
        using var dir = new TempDir();

        var (exit, stderr) = await RunDaemonToExitAsync(argument, $"--Gpud:DataDir={dir.Path}");

        Assert.Equal(ExitCodes.Configuration, exit);
        Assert.Contains(expected, stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    /// <summary>Runs the real gpud with <paramref name="arguments"/> until it exits; returns its exit code and stderr.</summary>
    private static async Task<(int Exit, string Stderr)> RunDaemonToExitAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet", [Repo.GpudDll, .. arguments])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), "gpud should exit");
        return (process.ExitCode, await stderr);
    }
}
