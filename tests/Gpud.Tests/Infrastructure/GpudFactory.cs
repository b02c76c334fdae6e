using System.Net.Http.Headers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// gpud in-process over its real pipeline, with its own data dir. Settings are applied exactly as
/// <c>--Gpud:Key=value</c> would be; pass <paramref name="dataDir"/> to restart over an existing data dir.
/// </summary>
public sealed class GpudFactory(IReadOnlyDictionary<string, string?>? settings = null, string? dataDir = null, TimeProvider? time = null)
    : WebApplicationFactory<Program>
{
    private readonly TempDir? _ownedDir = dataDir is null ? new TempDir() : null;

    public string DataDir => dataDir ?? _ownedDir!.Path;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Gpud:DataDir", DataDir);
        builder.UseSetting("urls", "http://127.0.0.1:0");
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
            builder.UseSetting(key, value);
        if (time is not null) builder.ConfigureTestServices(services => services.AddSingleton(time));
    }

    /// <summary>A client that sends <c>Authorization: Bearer {key}</c>, as the OpenAI SDKs always do.</summary>
    public HttpClient Client(string key = "sk-anything")
    {
        var client = CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _ownedDir?.Dispose();
    }
}
