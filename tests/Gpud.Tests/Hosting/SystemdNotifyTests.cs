using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Hosting;

/// <summary>
/// <c>Type=notify</c>: gpud tells systemd READY=1 once it listens, and STOPPING=1 on SIGTERM. systemd is simulated:
/// .NET only speaks sd_notify when its parent process is called "systemd", so the daemon is started through a shell
/// invoked under that name, with NOTIFY_SOCKET pointing at a datagram socket this test reads.
/// </summary>
public sealed class SystemdNotifyTests
{
    [Fact]
    public async Task Gpud_notifies_ready_when_listening_feeds_the_watchdog_and_notifies_stopping_on_sigterm()
    {
        using var dir = new TempDir();
        var launcher = dir["systemd"];
        File.CreateSymbolicLink(launcher, "/bin/sh");
        var socketPath = dir["notify.sock"];
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));

        var port = DaemonProcess.FreePort();
        var command = $"dotnet '{Repo.GpudDll}' --urls=http://127.0.0.1:{port} '--Gpud:DataDir={dir["data"]}' & child=$!; " +
                      "trap 'kill -TERM $child' TERM; wait $child; wait $child";
        var start = new ProcessStartInfo(launcher, ["-c", command]) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["NOTIFY_SOCKET"] = socketPath;
        start.Environment["WATCHDOG_USEC"] = "600000"; // WatchdogSec=0.6: a ping every 0.3 s
        using var shell = Process.Start(start)!;
        _ = shell.StandardOutput.ReadToEndAsync();
        _ = shell.StandardError.ReadToEndAsync();
        try
        {
            var messages = new List<string>();
            while (!messages.Contains("READY=1")) messages.Add(await ReceiveAsync(socket, TimeSpan.FromSeconds(30)));
            var pings = messages.Count(m => m == "WATCHDOG=1");
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < TimeSpan.FromSeconds(2)) pings += await ReceiveAsync(socket, TimeSpan.FromSeconds(5)) == "WATCHDOG=1" ? 1 : 0;
            Assert.InRange(pings, 5, 12); // about one per 0.3 s
            using var client = new HttpClient();
            Assert.Equal("ok", (await (await client.GetAsync($"http://127.0.0.1:{port}/healthz")).Json()).GetProperty("status").GetString());

            Process.Start("kill", ["-TERM", shell.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            while (await ReceiveAsync(socket, TimeSpan.FromSeconds(30)) is var message && message != "STOPPING=1")
                Assert.Equal("WATCHDOG=1", message); // pings may still arrive until the host stops
            Assert.True(shell.WaitForExit(TimeSpan.FromSeconds(30)), "gpud should exit after SIGTERM");
        }
        finally
        {
            if (!shell.HasExited) shell.Kill(entireProcessTree: true);
        }
    }

    private static async Task<string> ReceiveAsync(Socket socket, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        var buffer = new byte[4096];
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
        return Encoding.UTF8.GetString(buffer, 0, n);
    }
}
