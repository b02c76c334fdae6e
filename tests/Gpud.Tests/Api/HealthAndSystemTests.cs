using System.Net;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

public sealed class HealthAndSystemTests
{
    [Fact]
    public async Task Readyz_turns_ready_once_libtorch_is_loaded_and_system_describes_it()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        Assert.Equal("ok", (await (await client.GetAsync("/healthz")).Json()).GetProperty("status").GetString());

        HttpResponseMessage ready = null!;
        for (var i = 0; i < 300; i++)
        {
            ready = await client.GetAsync("/readyz");
            if (ready.StatusCode == HttpStatusCode.OK) break;
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        var checks = (await ready.Json()).GetProperty("checks");
        Assert.Equal(["compute", "database", "disk", "models"], checks.EnumerateObject().Select(c => c.Name).Order());

        var system = await (await client.GetAsync("/v1/system")).Json();
        Assert.Equal("ready", system.GetProperty("compute_status").GetString());
        Assert.StartsWith("2.10", system.GetProperty("libtorch_version").GetString());
        Assert.False(system.GetProperty("cuda_available").GetBoolean());
        Assert.Contains(system.GetProperty("devices").EnumerateArray(), d => d.GetProperty("id").GetString() == "cpu" && d.GetProperty("total_memory_bytes").GetInt64() > 0);
        Assert.True(system.GetProperty("data_dir_free_bytes").GetInt64() > 0);
    }

    [Fact]
    public async Task Without_an_nvidia_driver_gpu_telemetry_is_absent_not_zero()
    {
        Assert.Null(Gpud.Engine.Compute.Nvml.TryOpen("libnvidia-ml-not-installed.so.1"));
        Assert.Null(Gpud.Engine.Compute.Nvml.TryOpen("libc.so.6")); // loads, but is not NVML
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        for (var i = 0; i < 200 && (await client.GetAsync("/readyz")).StatusCode != System.Net.HttpStatusCode.OK; i++) await Task.Delay(50);

        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("# TYPE gpud_gpu_utilization_percent gauge", metrics); // declared...
        Assert.DoesNotContain(metrics.Split('\n'), l => l.StartsWith("gpud_gpu_", StringComparison.Ordinal)); // ...but no made-up readings
        var cpu = (await (await client.GetAsync("/v1/system")).Json()).GetProperty("devices").EnumerateArray().Single();
        Assert.Equal("cpu", cpu.GetProperty("id").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, cpu.GetProperty("memory_used_bytes").ValueKind);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, cpu.GetProperty("utilization_percent").ValueKind);
    }

    [Fact]
    public async Task Readyz_fails_when_the_data_dir_is_short_of_space()
    {
        using var gpud = new GpudFactory(new Dictionary<string, string?> { ["Gpud:MinFreeDiskBytes"] = (1L << 60).ToString(System.Globalization.CultureInfo.InvariantCulture) });
        var response = await gpud.CreateClient().GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("failing", (await response.Json()).GetProperty("checks").GetProperty("disk").GetProperty("status").GetString());
    }

    [Fact]
    public async Task Metrics_expose_http_request_counters_in_prometheus_format()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        await client.GetAsync("/v1/files");

        var response = await client.GetAsync("/metrics");
        var text = await response.Content.ReadAsStringAsync();

        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("http_requests_received_total{", text);
        Assert.Contains("endpoint=\"/v1/files/\"", text);
    }

    [Fact]
    public async Task Failed_requests_are_counted_with_their_real_status_and_route()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        await client.GetAsync("/v1/files/file-missing");                           // 404 from a service
        var id = (await (await client.PostAsync("/v1/files", Requests.UploadForm("{}", "user_data"))).Json()).GetProperty("id").GetString();
        File.Delete(Path.Combine(gpud.DataDir, "blobs", "files", id!));
        await client.GetAsync($"/v1/files/{id}/content");                          // 500 from an unexpected exception

        // The registry is process-wide and other tests make the same requests: check the labels, not the counts.
        var lines = (await client.GetStringAsync("/metrics")).Split('\n').Where(l => l.StartsWith("http_requests_received_total{", StringComparison.Ordinal)).ToList();
        Assert.Contains(lines, l => l.Contains("code=\"404\",method=\"GET\"", StringComparison.Ordinal) && l.Contains("endpoint=\"/v1/files/{id}\"", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("code=\"500\",method=\"GET\"", StringComparison.Ordinal) && l.Contains("endpoint=\"/v1/files/{id}/content\"", StringComparison.Ordinal));
    }
}
