using System.Diagnostics;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// Runs tests/sdk (the official <c>openai</c> npm package) against a real gpud. Needs Node.js 18+ on PATH;
/// <c>npm ci</c> runs on first use. A failing SDK assertion fails this test with node's output.
/// </summary>
public sealed class OpenAiSdkTests
{
    [Fact]
    public async Task The_official_openai_node_sdk_drives_the_files_api()
    {
        var sdk = Repo.File("tests/sdk");
        if (!Directory.Exists(Path.Combine(sdk, "node_modules", "openai")))
        {
            var (installed, log) = await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], sdk, new Dictionary<string, string>());
            Assert.True(installed == 0, $"npm ci failed in tests/sdk (Node.js 18+ and the npm registry are needed):\n{log}");
        }

        using var dir = new TempDir();
        const string key = "sk-sdk-test-0123456789";
        using var gpud = await DaemonProcess.StartAsync(dir.Path, $"--Gpud:ApiKeys:0={key}");
        var (exit, output) = await RunAsync("node", ["--test", "--test-reporter=spec"], sdk, new Dictionary<string, string>
        {
            ["GPUD_BASE_URL"] = new Uri(gpud.BaseAddress, "/v1").ToString(),
            ["GPUD_API_KEY"] = key,
        });

        Assert.True(exit == 0, output);
        Assert.Contains("pass 4", output);
    }

    private static async Task<(int Exit, string Output)> RunAsync(string command, string[] arguments, string directory, IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(command, arguments)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
