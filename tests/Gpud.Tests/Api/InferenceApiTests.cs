using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Engine.Demo;
using Gpud.Engine.Lora;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

public sealed class InferenceApiTests
{
    // gpud-tiny's <|end_of_text|> and <|eot_id|>: banned where a request must run to max_tokens.
    private static readonly Dictionary<string, int> NoEos = new() { ["257"] = -100, ["260"] = -100 };

    /// <summary>A base model under a name no other test uses (metrics are process-wide), plus adapters for it.</summary>
    private static (string Model, Dictionary<string, string?> Settings) ServedSetup(TempDir dir, int adapters, params (string Key, string Value)[] extra)
    {
        var model = "tiny-" + Guid.NewGuid().ToString("N")[..8];
        var path = DemoModel.EnsureCreated(dir["base"]);
        var settings = new Dictionary<string, string?> { [$"Gpud:Models:{model}:Path"] = path };
        for (var i = 1; i <= adapters; i++)
        {
            Adapters.Write(dir[$"a{i}"], path, seed: i, new LoraSettings(2 * i, 4 * i, UseDora: i == 3));
            settings[$"Gpud:Adapters:{model}-a{i}:Path"] = dir[$"a{i}"];
            settings[$"Gpud:Adapters:{model}-a{i}:BaseModel"] = model;
        }
        foreach (var (key, value) in extra) settings[key] = value;
        return (model, settings);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("Gpud:Inference:MaxGpuAdapters", "1")] // one device slot: an adapter about to be prefilled is never evicted for the next
    [InlineData("Gpud:Inference:MaxPrefillTokens", "1")] // every prompt prefilled on its own
    public async Task Sixteen_concurrent_requests_over_four_adapters_and_the_base_each_return_what_they_return_alone(string? key, string? value)
    {
        using var dir = new TempDir();
        var (model, settings) = ServedSetup(dir, adapters: 4, key is null ? [] : [(key, value!)]);
        using var factory = new GpudFactory(settings);
        var client = factory.Client();
        string[] prompts = ["The capital of", "Once upon a time", "def main():"];
        var requests = Enumerable.Range(0, 16)
            .Select(i => new { model = i % 5 == 0 ? model : $"{model}-a{i % 5}", prompt = prompts[i % 3], max_tokens = 20 + i, temperature = 0, logit_bias = NoEos })
            .ToList();

        var alone = new List<string>();
        foreach (var request in requests) alone.Add(await TextOf(await client.PostAsJsonAsync("/v1/completions", request)));
        var together = await Task.WhenAll(requests.Select(async r => await TextOf(await client.PostAsJsonAsync("/v1/completions", r))));

        Assert.Equal(alone, together);
        // Same prompt, five models, five different texts: the adapters were applied, each to its own rows.
        var firstPrompt = Enumerable.Range(0, 5).Select(m => requests.Select((r, i) => (r, i)).First(x => x.r.model == (m == 0 ? model : $"{model}-a{m}")).i);
        Assert.Equal(5, firstPrompt.Select(i => alone[i][..Math.Min(20, alone[i].Length)] + requests[i].prompt).Distinct().Count());
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains($"gpud_model_loads_total{{model_name=\"{model}\"}} 1", metrics); // adapter switches never reload the base
        Assert.Matches("gpud_adapter_cache_hits_total\\{tier=\"device\"\\} [1-9]", metrics);
    }

    [Fact]
    public async Task Json_mode_answers_are_json_objects_whole_or_streamed_and_plain_answers_are_not()
    {
        using var factory = new GpudFactory();
        var client = factory.Client();
        object Request(string? format, bool stream = false) => new Dictionary<string, object?>
        {
            ["model"] = "gpud-tiny", ["messages"] = new[] { new { role = "user", content = "Describe Paris as JSON." } }, ["n"] = 6,
            ["temperature"] = 1, ["seed"] = 3, ["max_tokens"] = 300, ["stream"] = stream,
            ["response_format"] = format is null ? null : new { type = format },
        };

        var answer = await (await client.PostAsJsonAsync("/v1/chat/completions", Request("json_object"))).Json();
        var choices = answer.GetProperty("choices").EnumerateArray().ToList();
        var stopped = choices.Where(c => c.GetProperty("finish_reason").GetString() == "stop").ToList();
        Assert.True(stopped.Count >= 3, answer.ToString());
        foreach (var choice in stopped)
        {
            using var json = JsonDocument.Parse(choice.GetProperty("message").GetProperty("content").GetString()!);
            Assert.Equal(JsonValueKind.Object, json.RootElement.ValueKind);
        }

        // Streamed, the deltas of each choice add up to the same objects.
        var response = await client.PostAsJsonAsync("/v1/chat/completions", Request("json_object", stream: true));
        var texts = new Dictionary<int, string>();
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
        {
            foreach (var choice in JsonDocument.Parse(line["data: ".Length..]).RootElement.GetProperty("choices").EnumerateArray())
            {
                var index = choice.GetProperty("index").GetInt32();
                if (choice.GetProperty("delta").TryGetProperty("content", out var content)) texts[index] = texts.GetValueOrDefault(index, "") + content.GetString();
            }
        }
        foreach (var choice in stopped)
            Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString(), texts[choice.GetProperty("index").GetInt32()]);

        var plain = await (await client.PostAsJsonAsync("/v1/chat/completions", Request("text"))).Json();
        Assert.All(plain.GetProperty("choices").EnumerateArray(), c => Assert.False(c.GetProperty("message").GetProperty("content").GetString()!.TrimStart().StartsWith('{')));
    }

    [Fact]
    public async Task Json_schema_answers_are_instances_of_the_schema_on_both_endpoints_and_unenforceable_schemas_are_refused()
    {
        using var factory = new GpudFactory();
        var client = factory.Client();
        var schema = JsonDocument.Parse("""
            {"type": "object", "additionalProperties": false, "required": ["city", "rank"],
             "properties": {"city": {"enum": ["Paris", "Lyon"]}, "rank": {"type": "integer"}, "rivers": {"type": "array", "items": {"enum": ["Seine", "Rhône"]}, "maxItems": 2}}}
            """).RootElement;
        var format = new { type = "json_schema", json_schema = new { name = "city", strict = true, schema } };

        var chat = await (await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "gpud-tiny", messages = new[] { new { role = "user", content = "A French city as JSON." } }, n = 6, temperature = 1, seed = 5, max_tokens = 200,
            response_format = format,
        })).Json();
        var completion = await (await client.PostAsJsonAsync("/v1/completions", new
        {
            model = "gpud-tiny", prompt = "A French city as JSON:", n = 6, temperature = 1, seed = 5, max_tokens = 200, response_format = format,
        })).Json();
        var texts = chat.GetProperty("choices").EnumerateArray().Where(c => c.GetProperty("finish_reason").GetString() == "stop").Select(c => c.GetProperty("message").GetProperty("content").GetString()!)
            .Concat(completion.GetProperty("choices").EnumerateArray().Where(c => c.GetProperty("finish_reason").GetString() == "stop").Select(c => c.GetProperty("text").GetString()!))
            .ToList();
        Assert.True(texts.Count >= 6, $"{chat}\n{completion}");
        foreach (var text in texts)
        {
            var answer = JsonDocument.Parse(text).RootElement;
            Assert.Contains(answer.GetProperty("city").GetString(), new[] { "Paris", "Lyon" });
            Assert.True(answer.GetProperty("rank").TryGetInt64(out _), text);
            var names = answer.EnumerateObject().Select(p => p.Name).ToList();
            Assert.True(names.SequenceEqual(["city", "rank"]) || names.SequenceEqual(["city", "rank", "rivers"]), text);
            if (answer.TryGetProperty("rivers", out var rivers))
                Assert.All(rivers.EnumerateArray(), r => Assert.Contains(r.GetString(), new[] { "Seine", "Rhône" }));
        }

        var refused = await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } },
            response_format = new { type = "json_schema", json_schema = new { name = "step", schema = JsonDocument.Parse("""{"type":"object","properties":{"n":{"type":"integer","not":{"const":5}}}}""").RootElement } },
        });
        var error = await refused.AssertError(HttpStatusCode.BadRequest, "response_format", "invalid_json_schema");
        Assert.Equal("Invalid schema for response_format 'step': In context '#/properties/n': 'not' is not supported by gpud's structured outputs "
            + "(supported: type, properties, required, additionalProperties, items, minItems, maxItems, prefixItems, additionalItems, minLength, maxLength, pattern, format, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, enum, const, anyOf, oneOf, allOf, $ref).", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_chat_answer_ends_at_the_templates_end_of_turn_even_when_the_config_names_only_end_of_text()
    {
        // As a base model's files do (Llama 3.2 1B: <|end_of_text|> only), while its fine-tunes end turns with <|eot_id|>.
        using var dir = new TempDir();
        var path = DemoModel.EnsureCreated(dir["base"]);
        foreach (var (file, key, value) in new[] { ("config.json", "eos_token_id", 257), ("generation_config.json", "eos_token_id", 257), ("tokenizer_config.json", "eos_token", 0) })
        {
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(path, file)))!;
            config[key] = value == 0 ? "<|end_of_text|>" : value;
            File.WriteAllText(Path.Combine(path, file), config.ToJsonString());
        }
        using var factory = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Models:base-tiny:Path"] = path });
        var eot = new Dictionary<string, int> { ["260"] = 100 }; // the model says <|eot_id|> at once

        var chat = (await (await factory.Client().PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "base-tiny", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 8, logit_bias = eot,
        })).Json());
        Assert.Equal("stop", chat.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal("", chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        // A plain completion is no chat turn: <|eot_id|> is just a token there.
        var completion = await (await factory.Client().PostAsJsonAsync("/v1/completions", new { model = "base-tiny", prompt = "hi", max_tokens = 8, logit_bias = eot })).Json();
        Assert.Equal("length", completion.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_prompt_that_arrives_while_another_decodes_joins_its_step_and_gets_the_answer_it_gets_alone()
    {
        using var dir = new TempDir();
        var (model, settings) = ServedSetup(dir, adapters: 0);
        using var factory = new GpudFactory(settings);
        var client = factory.Client();
        async Task<string> Complete() => (await (await client.PostAsJsonAsync("/v1/completions", new { model, prompt = "hi", max_tokens = 6, temperature = 0, logit_bias = NoEos })).Json())
            .GetProperty("choices")[0].GetProperty("text").GetString()!;
        var alone = await Complete();
        Assert.Equal(0, await Metric(client, $"gpud_forward_passes_total{{model_name=\"{model}\",kind=\"mixed\"}}"));

        using var cancel = new CancellationTokenSource();
        using var running = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model, prompt = "go", max_tokens = 2000, stream = true, logit_bias = NoEos }),
        };
        using var stream = await client.SendAsync(running, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        var reader = new StreamReader(await stream.Content.ReadAsStreamAsync(cancel.Token));
        Assert.StartsWith("data: {", await reader.ReadLineAsync(cancel.Token)); // decoding
        var joined = await Complete();
        await cancel.CancelAsync();

        Assert.Equal(alone, joined);
        Assert.True(await Metric(client, $"gpud_forward_passes_total{{model_name=\"{model}\",kind=\"mixed\"}}") >= 1, "the prompt did not join the decode step");
        Assert.True(await Metric(client, $"gpud_forward_passes_total{{model_name=\"{model}\",kind=\"decode\"}}") >= 5);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_its_row_for_the_next_request()
    {
        using var dir = new TempDir();
        var (model, settings) = ServedSetup(dir, adapters: 0, ("Gpud:Inference:MaxBatchSize", "1"));
        using var factory = new GpudFactory(settings);
        var client = factory.Client();

        using (var cancel = new CancellationTokenSource())
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = JsonContent.Create(new { model, prompt = "go", max_tokens = 2000, stream = true, logit_bias = NoEos }),
            };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
            Assert.StartsWith("data: {", await reader.ReadLineAsync(cancel.Token));
            await cancel.CancelAsync();
        }

        // The only row is free again long before 2000 tokens could have been generated.
        var next = await client.PostAsJsonAsync("/v1/completions", new { model, prompt = "next", max_tokens = 3 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        var generated = await Metric(client, $"gpud_generation_tokens_total{{model_name=\"{model}\"}}");
        Assert.True(generated < 1500, $"{generated} tokens generated: the abandoned request kept running");
        Assert.Equal(0, await Metric(client, $"gpud_num_requests_running{{model_name=\"{model}\"}}"));
    }

    [Fact]
    public async Task A_full_waiting_queue_answers_429_with_retry_after()
    {
        using var dir = new TempDir();
        var (model, settings) = ServedSetup(dir, adapters: 0, ("Gpud:Inference:MaxBatchSize", "1"), ("Gpud:Inference:MaxWaitingRequests", "1"));
        using var factory = new GpudFactory(settings);
        var client = factory.Client();
        using var cancel = new CancellationTokenSource();
        using var running = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model, prompt = "busy", max_tokens = 2000, stream = true, logit_bias = NoEos }),
        };
        using var first = await client.SendAsync(running, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        var waiting = client.PostAsJsonAsync("/v1/completions", new { model, prompt = "wait", max_tokens = 2 });
        for (var i = 0; i < 200 && await Metric(client, $"gpud_num_requests_waiting{{model_name=\"{model}\"}}") < 1; i++) await Task.Delay(25);

        var refused = await client.PostAsJsonAsync("/v1/completions", new { model, prompt = "one too many", max_tokens = 2 });

        await refused.AssertError(HttpStatusCode.TooManyRequests, code: "server_overloaded");
        Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter?.Delta);
        await cancel.CancelAsync();
        Assert.Equal(HttpStatusCode.OK, (await waiting).StatusCode);
    }

    [Fact]
    public async Task On_a_device_that_also_trains_completions_and_training_steps_take_turns_and_neither_starves()
    {
        using var factory = new GpudFactory(); // CPU only: the job and the server share the one device
        var client = factory.Client();
        var file = await client.UploadTrainingFileAsync();
        var id = (await client.CreateJobAsync(file, new { n_epochs = 50, batch_size = 1 })).GetProperty("id").GetString()!;
        var before = await client.WaitForJobAsync(id, j => j.Status() == "running" && j.Step() >= 1);
        const string Waits = "gpud_device_turn_wait_seconds_count{device=\"cpu\",workload=\"{0}\"}";
        var servingTurns = await Metric(client, Waits.Replace("{0}", "serving", StringComparison.Ordinal));
        var trainingTurns = await Metric(client, Waits.Replace("{0}", "training", StringComparison.Ordinal));

        // Generation is not held back until the job ends: every request completes while it is still training...
        for (var i = 0; i < 3; i++)
        {
            var response = await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = $"turn {i}", max_tokens = 24, logit_bias = NoEos });
            Assert.Equal(24, (await response.Json()).GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
        Assert.Equal("running", (await client.GetJobAsync(id)).Status());
        // ...and training was not held back by generation: its steps went on in between (a turn per optimizer step), both
        // through the device's turns.
        Assert.True(await Metric(client, Waits.Replace("{0}", "serving", StringComparison.Ordinal)) >= servingTurns + 3 * 20); // a turn per decode step
        Assert.True(await Metric(client, Waits.Replace("{0}", "training", StringComparison.Ordinal)) > trainingTurns);
        // The job's reported progress follows (it is written at most once per event interval, so wait for it).
        var after = await client.WaitForJobAsync(id, j => j.Step() > before.Step() || j.Status() != "running");
        Assert.Equal("running", after.Status());
        (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null)).EnsureSuccessStatusCode();
    }

    [Fact]
    public async Task The_four_prompt_shapes_echo_best_of_and_n_follow_the_contract()
    {
        using var factory = new GpudFactory();
        var client = factory.Client();
        var tokens = (await (await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = "Hi", max_tokens = 1, echo = true, logprobs = 0 })).Json())
            .GetProperty("choices")[0].GetProperty("logprobs").GetProperty("tokens").GetArrayLength();
        Assert.True(tokens >= 3); // BOS, "H", "i" echoed, then one generated token

        async Task<List<string>> Texts(object prompt, int n = 1) =>
            (await (await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt, max_tokens = 6, temperature = 0, n })).Json())
            .GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToList();
        var one = await Texts("Hi");
        // gpud-tiny's tokens are bytes after <|begin_of_text|> (256): the same prompt as ids gives the same text.
        var ids = new[] { 256, 'H', 'i' };
        Assert.Equal(one, await Texts(ids));
        Assert.Equal([one[0], one[0]], await Texts(new[] { "Hi", "Hi" }));
        Assert.Equal([one[0], one[0]], await Texts(new[] { ids, ids }));
        Assert.Equal([one[0], one[0]], await Texts("Hi", n: 2)); // greedy: every choice alike

        var echoed = await (await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = "Hi", max_tokens = 6, temperature = 0, echo = true })).Json();
        Assert.Equal("Hi" + one[0], echoed.GetProperty("choices")[0].GetProperty("text").GetString());

        var best = await (await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = "Hi", max_tokens = 8, n = 2, best_of = 5, seed = 3 })).Json();
        Assert.Equal(2, best.GetProperty("choices").GetArrayLength());
        Assert.True(best.GetProperty("usage").GetProperty("completion_tokens").GetInt32() > 16, "best_of counts every generated choice");
    }

    [Theory]
    [InlineData("""{"prompt":"x"}""", "model", null)]
    [InlineData("""{"model":"gpud-tiny"}""", "prompt", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":[]}""", "prompt", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":[1,99999]}""", "prompt", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":[1,"a"]}""", "prompt", "invalid_type")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","max_tokens":2048}""", "max_tokens", "context_length_exceeded")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","max_tokens":0}""", "max_tokens", "integer_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","temperature":2.5}""", "temperature", "number_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","top_p":0}""", "top_p", "number_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","n":0}""", "n", "integer_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","n":3,"best_of":2}""", "best_of", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","best_of":2,"stream":true}""", "best_of", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","stream_options":{"include_usage":true}}""", "stream_options", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","logprobs":6}""", "logprobs", "integer_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","stop":["a","b","c","d","e"]}""", "stop", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","stop":7}""", "stop", "invalid_type")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","presence_penalty":-2.1}""", "presence_penalty", "number_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","frequency_penalty":3}""", "frequency_penalty", "number_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","logit_bias":{"abc":1}}""", "logit_bias", null)]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","logit_bias":{"5":101}}""", "logit_bias.5", "number_out_of_range")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","seed":1.5}""", "seed", "invalid_type")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","suffix":"end"}""", "suffix", "unsupported_parameter")]
    [InlineData("""{"model":"gpud-tiny","prompt":"x","frobnicate":1}""", "frobnicate", "unknown_parameter")]
    public async Task Completion_requests_with_a_bad_field_get_a_400_naming_it(string body, string param, string? code)
    {
        using var factory = new GpudFactory();
        var response = await factory.Client().PostAsync("/v1/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        await response.AssertError(HttpStatusCode.BadRequest, param, code);
    }

    [Theory]
    [InlineData("""{"model":"gpud-tiny"}""", "messages", null)]
    [InlineData("""{"model":"gpud-tiny","messages":[{"content":"x"}]}""", "messages[0].role", null)]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"robot","content":"x"}]}""", "messages[0].role", null)]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}""", "functions", "unsupported_parameter")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}""", "response_format.json_schema", "missing_required_parameter")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}""", "response_format.json_schema.name", "missing_required_parameter")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{"type":"object"}}}}""", "response_format.json_schema.name", "invalid_value")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","strict":"yes"}}}""", "response_format.json_schema.strict", "invalid_type")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object","properties":{"zip":{"type":"string","pattern":"(?=x)"}}}}}}""", "response_format", "invalid_json_schema")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"array"}}}}""", "response_format", "invalid_json_schema")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}""", "response_format.type", null)]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"response_format":"json"}""", "response_format", "invalid_type")]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":2}""", "top_logprobs", null)]
    [InlineData("""{"model":"gpud-tiny","messages":[{"role":"user","content":"x"}],"max_completion_tokens":5000}""", "max_completion_tokens", "context_length_exceeded")]
    public async Task Chat_requests_with_a_bad_field_get_a_400_naming_it(string body, string param, string? code)
    {
        using var factory = new GpudFactory();
        var response = await factory.Client().PostAsync("/v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        await response.AssertError(HttpStatusCode.BadRequest, param, code);
    }

    [Fact]
    public async Task Unknown_models_and_adapters_of_another_project_are_404_model_not_found()
    {
        using var factory = new GpudFactory();
        var response = await factory.Client().PostAsJsonAsync("/v1/completions", new { model = "ft:gpud-tiny:gpud::ftjob-abc", prompt = "x" });
        await response.AssertError(HttpStatusCode.NotFound, "model", "model_not_found");
        response = await factory.Client().PostAsJsonAsync("/v1/chat/completions", new { model = "nope", messages = new[] { new { role = "user", content = "x" } } });
        await response.AssertError(HttpStatusCode.NotFound, "model", "model_not_found");
    }

    [Fact]
    public async Task The_model_of_a_job_that_has_not_finished_cannot_be_deleted()
    {
        using var factory = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Devices:0:Name"] = "cuda:7" }); // no slot: the job stays queued
        var client = factory.Client();
        var job = await client.CreateJobAsync(await client.UploadTrainingFileAsync(), suffix: "keep");
        var id = job.GetProperty("id").GetString()!;
        await client.WaitForJobAsync(id, j => j.Status() == "queued");

        var response = await client.DeleteAsync($"/v1/models/ft:gpud-tiny:gpud:keep:{id}");

        await response.AssertError(HttpStatusCode.BadRequest, "model", "model_in_use");
        await (await client.DeleteAsync("/v1/models/gpud-tiny")).AssertError(HttpStatusCode.BadRequest, "model", "model_not_deletable");
    }

    [Fact]
    public async Task An_uploaded_peft_adapter_is_checked_against_its_base_served_by_name_and_deleted()
    {
        using var factory = new GpudFactory();
        var client = factory.Client();
        using var dir = new TempDir();
        var tiny = DemoModel.EnsureCreated(dir["tiny"]);
        Adapters.Write(dir["good"], tiny, seed: 4, new LoraSettings(4, 8));
        Adapters.Write(dir["other"], Repo.File("tests/fixtures/models/llama3-tiny"), seed: 4); // another base: other shapes
        MultipartFormDataContent Form(string name, string adapter)
        {
            var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent("gpud-tiny"), "base_model" } };
            foreach (var file in new[] { "adapter_config.json", "adapter_model.safetensors" })
                form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(adapter, file))), "file", file);
            return form;
        }

        var uploaded = await (await client.PostAsync("/v1/adapters", Form("team/peft-1", dir["good"]))).Json();
        Assert.Equal(("adapter", 4), (uploaded.GetProperty("object").GetString(), uploaded.GetProperty("rank").GetInt32()));
        await (await client.PostAsync("/v1/adapters", Form("team/peft-1", dir["good"]))).AssertError(HttpStatusCode.BadRequest, "name", "adapter_name_taken");
        var misfit = await client.PostAsync("/v1/adapters", Form("misfit", dir["other"]));
        var error = await misfit.AssertError(HttpStatusCode.BadRequest, "file", "invalid_adapter");
        Assert.Contains("shape", error.GetProperty("message").GetString());

        var completion = await client.PostAsJsonAsync("/v1/completions", new { model = "team/peft-1", prompt = "Hi", max_tokens = 4 });
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        var listed = await (await client.GetAsync("/v1/models")).Json();
        var entry = listed.GetProperty("data").EnumerateArray().Single(m => m.GetProperty("id").GetString() == "team/peft-1");
        Assert.Equal(("gpud-tiny", "adapter"), (entry.GetProperty("parent").GetString(), entry.GetProperty("kind").GetString()));

        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync("/v1/models/team/peft-1")).StatusCode);
        await (await client.PostAsJsonAsync("/v1/completions", new { model = "team/peft-1", prompt = "Hi" })).AssertError(HttpStatusCode.NotFound, "model", "model_not_found");
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(factory.DataDir, "adapters", "imported")));
    }

    private static async Task<string> TextOf(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    private static async Task<double> Metric(HttpClient client, string series)
    {
        var line = (await client.GetStringAsync("/metrics")).Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
