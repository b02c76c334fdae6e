using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Engine.Demo;
using Gpud.Services.Errors;
using Gpud.Services.Models;
using Gpud.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gpud.Tests.Services;

public sealed class ModelCatalogTests
{
    [Fact]
    public void Gpud_tiny_chats_with_the_llama3_template_and_a_model_without_one_fails_chat_only()
    {
        using var dir = new TempDir();
        var plain = DemoModel.EnsureCreated(dir["plain"]);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(plain, "tokenizer_config.json")))!.AsObject();
        config.Remove("chat_template");
        File.WriteAllText(Path.Combine(plain, "tokenizer_config.json"), config.ToJsonString());
        var catalog = new ModelCatalog([new BaseModelDefinition("plain", plain, null, [])], dir["gpud-tiny"], NullLogger<ModelCatalog>.Instance);

        catalog.LoadAll(CancellationToken.None);

        var tiny = catalog.Get(DemoModel.Name);
        Assert.Equal("llama3", tiny.ChatTemplate!.Family);
        using var messages = JsonDocument.Parse("""[{"role":"user","content":"Hi"}]""");
        var prompt = tiny.Chat().Format(messages.RootElement, addGenerationPrompt: true);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", prompt.Text);
        Assert.Equal(tiny.Tokenizer.BosTokenId, prompt.TokenIds[0]);

        var withoutTemplate = catalog.Get("plain"); // still served for completions
        var e = Assert.Throws<GpudException>(() => withoutTemplate.Chat());
        Assert.Equal(("model", "chat_template_unavailable"), (e.Param, e.Code));
        Assert.Contains("/v1/completions", e.Message);
    }
}
