using Gpud.Engine.Demo;
using Gpud.Engine.Lora;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// Runs tests/js/*.test.mjs (the official <c>openai</c> npm package) against a real gpud. A failing SDK
/// assertion fails this test with node's output.
/// </summary>
public sealed class OpenAiSdkTests
{
    [Fact]
    public Task The_official_openai_node_sdk_drives_the_files_api() => RunAsync("files.test.mjs", passes: 5);

    [Fact]
    public Task The_official_openai_node_sdk_drives_the_fine_tuning_workflow() => RunAsync("fine_tuning.test.mjs", passes: 3);

    [Fact]
    public Task The_official_openai_node_sdk_drives_the_batch_api() => RunAsync("batches.test.mjs", passes: 3);

    [Fact]
    public Task The_official_openai_node_sdk_drives_inference_with_fine_tuned_models_checkpoints_and_adapters() =>
        RunAsync("inference.test.mjs", passes: 13, dir =>
        {
            // An adapter "trained elsewhere": PEFT files for gpud-tiny, registered from configuration.
            var model = DemoModel.EnsureCreated(Path.Combine(dir, "models", DemoModel.Name));
            Adapters.Write(Path.Combine(dir, "imported", "tiny-peft"), model, seed: 7, new LoraSettings(8, 16, UseRslora: true));
            return [$"--Gpud:Adapters:tiny-peft:Path={Path.Combine(dir, "imported", "tiny-peft")}", "--Gpud:Adapters:tiny-peft:BaseModel=gpud-tiny"];
        });

    [Fact]
    public Task The_official_openai_node_sdk_receives_a_fine_tuned_models_function_calls() =>
        RunAsync("tools.test.mjs", passes: 5, dir =>
        {
            var (model, adapter) = ToolCaller.Prepare(Path.Combine(dir, "tools"));
            return [$"--Gpud:Models:tiny-tools:Path={model}", $"--Gpud:Adapters:tiny-tools-caller:Path={adapter}", "--Gpud:Adapters:tiny-tools-caller:BaseModel=tiny-tools"];
        });

    private static async Task RunAsync(string script, int passes, Func<string, string[]>? prepare = null)
    {
        await JsPeers.EnsureInstalledAsync();
        using var dir = new TempDir();
        const string key = "sk-sdk-test-0123456789";
        var extra = prepare?.Invoke(dir.Path) ?? [];
        using var gpud = await DaemonProcess.StartAsync(dir.Path, [$"--Gpud:ApiKeys:0={key}", .. extra]);

        var (exit, output) = await JsPeers.RunAsync("node", ["--test", "--test-reporter=spec", script], new Dictionary<string, string>
        {
            ["GPUD_BASE_URL"] = new Uri(gpud.BaseAddress, "/v1").ToString(),
            ["GPUD_API_KEY"] = key,
        });

        Assert.True(exit == 0, output);
        Assert.Contains($"pass {passes}", output);
    }
}
