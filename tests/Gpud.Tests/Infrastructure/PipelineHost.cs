using Gpud.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Hosting;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// gpud's services and pipeline on a test server, built here rather than through Program so that start-up failures
/// surface as exceptions (Program turns them into an exit code, which <see cref="StartupConfigurationTests"/> checks
/// on the real process) and so tests can mount extra endpoints.
/// </summary>
public static class PipelineHost
{
    public static async Task<WebApplication> StartAsync(string dataDir, IReadOnlyDictionary<string, string?>? settings = null, Action<WebApplication>? map = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Production" });
        builder.WebHost.UseTestServer();
        builder.Configuration["Gpud:DataDir"] = dataDir;
        builder.Configuration["urls"] = "http://127.0.0.1:8080";
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
            builder.Configuration[key] = value;
        builder.Services.AddGpud(builder.Configuration);
        var app = builder.Build();
        app.UseGpud();
        map?.Invoke(app);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        return app;
    }
}
