using System.Net;
using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>
/// Refuses to start when gpud would listen beyond loopback with no API keys configured: without keys anyone who can
/// reach the port could read every file and drive the GPUs. Runs as the first hosted service, before Kestrel binds.
/// </summary>
internal sealed class ListenAddressGuard(IConfiguration configuration, IOptions<ApiKeyOptions> keys) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (keys.Value.Keys.Count > 0) return Task.CompletedTask;
        var exposed = ConfiguredAddresses(configuration).Where(a => !IsLoopback(a)).ToList();
        if (exposed.Count > 0)
            throw new StartupRefusedException(
                $"gpud would listen on {string.Join(", ", exposed)} with no API keys configured. " +
                "Set Gpud:ApiKeys (e.g. Gpud__ApiKeys__0=<secret>) or listen on loopback only (--urls http://127.0.0.1:8080).");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Every address the server will bind, from the same settings Kestrel reads.</summary>
    internal static IEnumerable<string> ConfiguredAddresses(IConfiguration configuration)
    {
        var any = false;
        foreach (var url in (configuration["urls"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            any = true;
            yield return url;
        }
        foreach (var key in new[] { "http_ports", "https_ports" })
        {
            foreach (var port in (configuration[key] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                any = true;
                yield return $"http://*:{port}";
            }
        }
        foreach (var endpoint in configuration.GetSection("Kestrel:Endpoints").GetChildren())
        {
            if (endpoint["Url"] is { } url)
            {
                any = true;
                yield return url;
            }
        }
        if (!any) yield return "http://localhost:5000"; // Kestrel's own default
    }

    internal static bool IsLoopback(string url)
    {
        if (url.StartsWith("unix:", StringComparison.OrdinalIgnoreCase)) return true; // a local socket file
        // Kestrel accepts "http://*:80" and "http://+:80", which Uri cannot parse: both mean every interface.
        var rest = url.Contains("://", StringComparison.Ordinal) ? url[(url.IndexOf("://", StringComparison.Ordinal) + 3)..] : url;
        var host = rest.StartsWith('[') ? rest[1..rest.IndexOf(']', StringComparison.Ordinal)] : rest.Split(':', '/')[0];
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address);
    }
}

/// <summary>gpud will not start with this configuration; the message says why and what to change.</summary>
public sealed class StartupRefusedException(string message) : Exception(message);
