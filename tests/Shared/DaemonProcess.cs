using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// The real gpud executable on a real loopback port, for what an in-process server cannot show: a socket that
/// drops mid-request, or the daemon killed with SIGKILL.
/// </summary>
public sealed class DaemonProcess : IDisposable
{
    private readonly Process _process;

    private DaemonProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        BaseAddress = new Uri($"http://127.0.0.1:{port}");
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _output = new();

    /// <summary>Everything the daemon wrote to stdout and stderr so far, a line each.</summary>
    public IReadOnlyList<string> Output => [.. _output];

    private void Capture(string? line)
    {
        if (line is not null) _output.Enqueue(line);
    }

    public static Task<DaemonProcess> StartAsync(string dataDir, params string[] arguments) =>
        StartAsync(dataDir, new Dictionary<string, string>(), arguments);

    public static async Task<DaemonProcess> StartAsync(string dataDir, IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var port = FreePort();
        var start = Command([$"--urls=http://127.0.0.1:{port}", $"--Gpud:DataDir={dataDir}", .. arguments]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        foreach (var (key, value) in environment) start.Environment[key] = value;
        var process = Process.Start(start)!;
        var daemon = new DaemonProcess(process, port);
        process.OutputDataReceived += (_, e) => daemon.Capture(e.Data);
        process.ErrorDataReceived += (_, e) => daemon.Capture(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var client = daemon.Client();
        for (var i = 0; i < 200; i++)
        {
            if (process.HasExited) throw new InvalidOperationException($"gpud exited with {process.ExitCode} during start-up");
            try
            {
                if ((await client.GetAsync("/healthz")).StatusCode == HttpStatusCode.OK) return daemon;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(50);
        }
        daemon.Dispose();
        throw new TimeoutException("gpud did not answer /healthz within 10 s");
    }

    /// <summary>In a checkout, the build's gpud.dll; in the GPU bundle (no checkout, no SDK), the published gpud beside the test program.</summary>
    private static ProcessStartInfo Command(IEnumerable<string> arguments) =>
        Repo.InCheckout
            ? new ProcessStartInfo("dotnet", [Repo.GpudDll, .. arguments])
            : new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "gpud"), arguments);

    public HttpClient Client(string key = "sk-anything")
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    /// <summary>The daemon's resident set size (VmRSS).</summary>
    public long ResidentBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }

    /// <summary>SIGKILL: no shutdown code runs, exactly like <c>kill -9</c> or the OOM killer.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as <c>systemctl stop</c> and <c>docker stop</c> send; returns the exit code.</summary>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        if (SendSignal(_process.Id, 15) != 0) throw new InvalidOperationException("kill(SIGTERM) failed");
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
