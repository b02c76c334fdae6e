using System.Net;
using System.Text.Json;
using Gpud.Engine.Demo;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

public sealed class ModelsApiTests
{
    [Fact]
    public async Task Gpud_tiny_and_configured_models_are_listed_and_broken_ones_are_reported_by_name()
    {
        using var dir = new TempDir();
        var good = DemoModel.EnsureCreated(dir["org/my-model"]);
        var missingShard = Copy(Repo.File("tests/fixtures/models/qwen2-tiny"), dir["missing-shard"]);
        File.Delete(Path.Combine(missingShard, "model-00002-of-00002.safetensors"));
        var badJson = Copy(good, dir["bad-json"]);
        File.WriteAllText(Path.Combine(badJson, "config.json"), "{\"architectures\": [");
        var gpt2 = Copy(good, dir["gpt2"]);
        File.WriteAllText(Path.Combine(gpt2, "config.json"), """{"architectures":["GPT2LMHeadModel"]}""");

        using var gpud = new GpudFactory(new Dictionary<string, string?>
        {
            ["Gpud:Models:org/my-model:Path"] = good,
            ["Gpud:Models:missing-shard:Path"] = missingShard,
            ["Gpud:Models:bad-json:Path"] = badJson,
            ["Gpud:Models:gpt2:Path"] = gpt2,
        });
        var client = gpud.Client();
        var ready = await WaitReadyAsync(client);

        var list = await (await client.GetAsync("/v1/models")).Json();
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.Equal(["gpud-tiny", "org/my-model"], list.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        var model = await (await client.GetAsync("/v1/models/org/my-model")).Json();
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.Equal("gpud", model.GetProperty("owned_by").GetString());
        Assert.True(model.GetProperty("created").GetInt64() > 1_600_000_000);

        foreach (var broken in new[] { "missing-shard", "bad-json", "gpt2", "never-configured" })
            await (await client.GetAsync($"/v1/models/{broken}")).AssertError(HttpStatusCode.NotFound, "model", "model_not_found");

        var detail = ready.GetProperty("checks").GetProperty("models").GetProperty("detail").GetString();
        Assert.Contains("missing-shard: ", detail);
        Assert.Contains("model-00002-of-00002.safetensors is missing", detail);
        Assert.Contains("bad-json: ", detail);
        Assert.Contains("gpt2: ", detail);
        Assert.Contains("GPT2LMHeadModel", detail);
    }

    [Fact]
    public async Task A_bad_model_setting_names_its_key()
    {
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => PipelineHost.StartAsync(dir.Path,
            new Dictionary<string, string?> { ["Gpud:Models:m:Path"] = "/x", ["Gpud:Models:m:Dtype"] = "int4" }));
        Assert.Contains("Gpud:Models:m:Dtype", e.Message);
    }

    private static async Task<JsonElement> WaitReadyAsync(HttpClient client)
    {
        for (var i = 0; i < 300; i++)
        {
            var response = await client.GetAsync("/readyz");
            if (response.StatusCode == HttpStatusCode.OK) return await response.Json();
            await Task.Delay(100);
        }
        throw new TimeoutException("gpud did not become ready");
    }

    private static string Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        return to;
    }
}
