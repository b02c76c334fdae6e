using System.Text.Json;

namespace Gpud.CudaTests;

/// <summary>
/// Sampled and structured generation through the daemon with the model on CUDA (bf16): the sampler and the structured
/// output masks run on the device there, not on the CPU as in the main suite.
/// </summary>
public sealed class GenerationTests
{
    [Fact]
    public async Task A_seeded_request_repeats_itself_and_json_schema_answers_are_instances_of_the_schema()
    {
        Gpu.Require();
        using var daemon = await Daemon.StartAsync();
        var schema = JsonDocument.Parse("""
            {"type": "object", "additionalProperties": false, "required": ["city", "rank"],
             "properties": {"city": {"enum": ["Paris", "Lyon"]}, "rank": {"type": "integer"}, "rivers": {"type": "array", "items": {"enum": ["Seine", "Rhône"]}, "maxItems": 2}}}
            """).RootElement;
        var request = new
        {
            model = "gpud-tiny", messages = new[] { new { role = "user", content = "A French city as JSON." } }, n = 6, temperature = 1, seed = 5, max_tokens = 200,
            response_format = new { type = "json_schema", json_schema = new { name = "city", strict = true, schema } },
        };

        var first = await daemon.PostAsync("/v1/chat/completions", request);
        Assert.Contains("Serving gpud-tiny on cuda:0", daemon.Log, StringComparison.Ordinal);
        var choices = first.GetProperty("choices").EnumerateArray().ToList();
        var finished = choices.Where(c => c.GetProperty("finish_reason").GetString() == "stop").Select(c => c.GetProperty("message").GetProperty("content").GetString()!).ToList();
        Assert.True(finished.Count >= 3, $"{finished.Count} of 6 answers ended within 200 tokens: {first}");
        foreach (var text in finished)
        {
            var answer = JsonDocument.Parse(text).RootElement;
            Assert.Contains(answer.GetProperty("city").GetString(), new[] { "Paris", "Lyon" });
            Assert.True(answer.GetProperty("rank").TryGetInt64(out _), text);
            if (answer.TryGetProperty("rivers", out var rivers))
                Assert.All(rivers.EnumerateArray(), r => Assert.Contains(r.GetString(), new[] { "Seine", "Rhône" }));
        }
        Assert.True(choices.Select(c => c.GetProperty("message").GetProperty("content").GetString()).Distinct().Count() > 1, $"six samples, one answer: {first}");

        // The same seed again: the same six answers (each choice draws from its own generator).
        var again = await daemon.PostAsync("/v1/chat/completions", request);
        Assert.Equal(
            choices.Select(c => c.GetProperty("message").GetProperty("content").GetString()),
            again.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()));
    }
}
