using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

public sealed class FineTuningApiTests
{
    /// <summary>A device this machine does not have: jobs validate and queue but never start (queue-only tests).</summary>
    private static readonly Dictionary<string, string?> NoDevice = new() { ["Gpud:Devices:0:Name"] = "cuda:7" };

    [Fact]
    public async Task A_job_trains_to_success_with_openai_objects_events_checkpoints_and_a_result_file()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();

        var created = await client.CreateJobAsync(file, new { n_epochs = 3, batch_size = 4 }, seed: 5, suffix: "caps");
        var id = created.GetProperty("id").GetString()!;
        Assert.StartsWith("ftjob-", id);
        Assert.Equal("fine_tuning.job", created.GetProperty("object").GetString());
        Assert.Equal("validating_files", created.Status());
        foreach (var key in new[] { "created_at", "error", "fine_tuned_model", "finished_at", "hyperparameters", "model", "organization_id",
                     "result_files", "status", "trained_tokens", "training_file", "validation_file", "seed", "estimated_finish", "method", "metadata", "integrations" })
            Assert.True(created.TryGetProperty(key, out _), $"job.{key} must be present");
        Assert.Equal("auto", created.GetProperty("hyperparameters").GetProperty("learning_rate_multiplier").GetString());

        var job = await client.WaitForJobAsync(id);
        Assert.Equal("succeeded", job.Status());
        Assert.Equal($"ft:gpud-tiny:gpud:caps:{id}", job.GetProperty("fine_tuned_model").GetString());
        Assert.Equal(JsonValueKind.Null, job.GetProperty("error").ValueKind);
        Assert.True(job.GetProperty("finished_at").GetInt64() >= job.GetProperty("created_at").GetInt64());
        var hyper = job.GetProperty("hyperparameters");
        Assert.Equal((4, 1.0, 3), (hyper.GetProperty("batch_size").GetInt32(), hyper.GetProperty("learning_rate_multiplier").GetDouble(), hyper.GetProperty("n_epochs").GetInt32()));
        Assert.Equal(15, job.GetProperty("progress").GetProperty("total_steps").GetInt32()); // 3 epochs x 20 / 4
        Assert.True(job.GetProperty("trained_tokens").GetInt64() > 0);

        var messages = await client.EventMessagesAsync(id);
        Assert.Equal($"Created fine-tuning job: {id}", messages[0]);
        Assert.Contains(messages, m => m.StartsWith("Files validated: 20 training examples", StringComparison.Ordinal));
        Assert.Contains("Fine-tuning job started on cpu", messages);
        Assert.Contains("Step 15/15: training loss=", messages.Single(m => m.StartsWith("Step 15/15", StringComparison.Ordinal)));
        Assert.Equal($"New fine-tuned model created: ft:gpud-tiny:gpud:caps:{id}", messages[^2]);
        Assert.Equal("The job has successfully completed", messages[^1]);
        var metricsEvent = (await client.AllEventsAsync(id)).Last(e => e.GetProperty("type").GetString() == "metrics");
        foreach (var key in new[] { "step", "total_steps", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy" })
            Assert.True(metricsEvent.GetProperty("data").TryGetProperty(key, out _), $"data.{key}");

        // Epoch ends at steps 5, 10, 15: all three kept (the default keeps 3), newest first, with OpenAI's names.
        var checkpoints = await (await client.GetAsync($"/v1/fine_tuning/jobs/{id}/checkpoints")).Json();
        var steps = checkpoints.GetProperty("data").EnumerateArray().Select(c => c.GetProperty("step_number").GetInt32()).ToList();
        Assert.Equal([15, 10, 5], steps);
        var newest = checkpoints.GetProperty("data")[0];
        Assert.StartsWith("ftckpt_", newest.GetProperty("id").GetString());
        Assert.Equal($"ft:gpud-tiny:gpud:caps:{id}:ckpt-step-15", newest.GetProperty("fine_tuned_model_checkpoint").GetString());
        Assert.Equal(15, newest.GetProperty("metrics").GetProperty("step").GetInt32());
        Assert.Equal(newest.GetProperty("id").GetString(), checkpoints.GetProperty("first_id").GetString());
        Assert.True(File.Exists(Path.Combine(gpud.DataDir, "adapters", id, "adapter_model.safetensors")));
        Assert.True(File.Exists(Path.Combine(gpud.DataDir, "jobs", id, "checkpoints", "step-5", "adapter_config.json")));

        // The result file: OpenAI's CSV, one row per step, losses that went down.
        var resultId = job.GetProperty("result_files")[0].GetString()!;
        var result = await (await client.GetAsync($"/v1/files/{resultId}")).Json();
        Assert.Equal("fine-tune-results", result.GetProperty("purpose").GetString());
        var csv = (await client.GetStringAsync($"/v1/files/{resultId}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy", csv[0]);
        Assert.Equal(Enumerable.Range(1, 15).Select(i => i.ToString(CultureInfo.InvariantCulture)), csv.Skip(1).Select(l => l.Split(',')[0]));
        double Loss(string row) => double.Parse(row.Split(',')[1], CultureInfo.InvariantCulture);
        Assert.True(Loss(csv[^1]) < Loss(csv[1]));
    }

    [Theory]
    [InlineData("""{"training_file":"FILE"}""", "model", 400)]
    [InlineData("""{"model":"gpud-tiny"}""", "training_file", 400)]
    [InlineData("""{"model":"no-such-model","training_file":"FILE"}""", "model", 404)]
    [InlineData("""{"model":"gpud-tiny","training_file":"file-doesnotexist"}""", "training_file", 404)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","validation_file":"file-nope"}""", "validation_file", 404)]
    [InlineData("""{"model":"gpud-tiny","training_file":"OTHER"}""", "training_file", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","seed":-1}""", "seed", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","seed":2147483648}""", "seed", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","suffix":"this-suffix-is-far-too-long-for-openai-which-allows-sixty-four-chars"}""", "suffix", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","suffix":"a:b"}""", "suffix", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","metadata":{"k":1}}""", "metadata", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","integrations":[{"type":"wandb"}]}""", "integrations", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","hyperparameters":{"batch_size":0}}""", "hyperparameters.batch_size", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","hyperparameters":{"lora_r":8}}""", "hyperparameters.lora_r", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","hyperparameters":{"n_epochs":2},"method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":2}}}}""", "hyperparameters", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"dpo","supervised":{"hyperparameters":{"n_epochs":2}}}}""", "method.supervised", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"dpo","dpo":{"hyperparameters":{"beta":0}}}}""", "method.dpo.hyperparameters.beta", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"dpo","dpo":{"hyperparameters":{"beta":2.5}}}}""", "method.dpo.hyperparameters.beta", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"supervised","supervised":{"hyperparameters":{"beta":0.1}}}}""", "method.supervised.hyperparameters.beta", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"reinforcement"}}""", "method.type", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{"type":"distillation"}}""", "method.type", 400)]
    [InlineData("""{"model":"gpud-tiny","training_file":"FILE","method":{}}""", "method.type", 400)]
    public async Task Every_invalid_request_is_refused_naming_its_param(string body, string param, int status)
    {
        using var gpud = new GpudFactory(NoDevice);
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var other = (await (await client.PostAsync("/v1/files", Requests.UploadForm("notes", "user_data", "notes.txt"))).Json()).GetProperty("id").GetString()!;

        var response = await client.PostAsync("/v1/fine_tuning/jobs",
            new StringContent(body.Replace("FILE", file, StringComparison.Ordinal).Replace("OTHER", other, StringComparison.Ordinal), System.Text.Encoding.UTF8, "application/json"));

        await response.AssertError((HttpStatusCode)status, param, status == 404 && param == "model" ? "model_not_found" : CodeFor(body));
        var list = await (await client.GetAsync("/v1/fine_tuning/jobs")).Json();
        Assert.Empty(list.GetProperty("data").EnumerateArray()); // nothing was stored
    }

    private static string? CodeFor(string body) => body switch
    {
        _ when body.Contains("\"seed\":", StringComparison.Ordinal) => "integer_out_of_range",
        _ when body.Contains("\"batch_size\":0", StringComparison.Ordinal) => "integer_out_of_range",
        _ when body.Contains("\"beta\":0}", StringComparison.Ordinal) || body.Contains("\"beta\":2.5", StringComparison.Ordinal) => "number_out_of_range",
        _ when !body.Contains("\"model\"", StringComparison.Ordinal) || !body.Contains("\"training_file\"", StringComparison.Ordinal) => "missing_required_parameter",
        _ => null,
    };

    [Theory]
    [InlineData("batch_size", "257")]
    [InlineData("batch_size", "\"big\"")]
    [InlineData("n_epochs", "0")]
    [InlineData("n_epochs", "51")]
    [InlineData("learning_rate_multiplier", "0")]
    [InlineData("learning_rate_multiplier", "-1")]
    [InlineData("lora_r", "0")]
    [InlineData("lora_alpha", "0")]
    [InlineData("lora_dropout", "1")]
    [InlineData("target_modules", "[\"q_proj\",\"lm_head\"]")]
    [InlineData("target_modules", "[]")]
    [InlineData("use_dora", "\"yes\"")]
    [InlineData("init", "\"olora\"")]
    [InlineData("scheduler", "\"polynomial\"")]
    [InlineData("warmup_ratio", "1")]
    [InlineData("weight_decay", "2")]
    [InlineData("eval_every_steps", "-1")]
    [InlineData("checkpoint_every_steps", "1.5")]
    [InlineData("learning_rate", "0.001")]
    [InlineData("lora_rank", "8")]
    public async Task Every_out_of_range_hyperparameter_is_a_400_naming_it(string name, string value)
    {
        using var gpud = new GpudFactory(NoDevice);
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var body = "{\"model\":\"gpud-tiny\",\"training_file\":\"" + file + "\",\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"" + name + "\":" + value + "}}}}";

        var response = await client.PostAsync("/v1/fine_tuning/jobs", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await response.Json()).GetProperty("error");
        Assert.Equal($"method.supervised.hyperparameters.{name}", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task LoRA_settings_sent_as_extra_hyperparameters_are_echoed_resolved()
    {
        using var gpud = new GpudFactory(NoDevice);
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var job = await client.CreateJobAsync(file, new
        {
            batch_size = "auto", n_epochs = 4, lora_r = 8, lora_alpha = 16, lora_dropout = 0.1, target_modules = new[] { "q_proj", "v_proj" },
            use_rslora = true, use_dora = true, init = "pissa", packing = false, scheduler = "cosine", warmup_ratio = 0.1, weight_decay = 0.01,
            checkpoint_every_steps = 7, gradient_checkpointing = true,
        });
        var id = job.GetProperty("id").GetString()!;

        job = await client.WaitForJobAsync(id, j => j.Status() == "queued");
        var h = job.GetProperty("method").GetProperty("supervised").GetProperty("hyperparameters");
        Assert.Equal(1, h.GetProperty("batch_size").GetInt32()); // auto: ~0.2% of 20 examples, at least 1
        Assert.Equal(4, h.GetProperty("n_epochs").GetInt32());
        Assert.Equal(8, h.GetProperty("lora_r").GetInt32());
        Assert.Equal(16, h.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(["q_proj", "v_proj"], h.GetProperty("target_modules").EnumerateArray().Select(t => t.GetString()));
        Assert.True(h.GetProperty("use_rslora").GetBoolean() && h.GetProperty("use_dora").GetBoolean() && !h.GetProperty("packing").GetBoolean());
        Assert.Equal(("pissa", "cosine"), (h.GetProperty("init").GetString(), h.GetProperty("scheduler").GetString()));
        Assert.Equal(7, h.GetProperty("checkpoint_every_steps").GetInt32());
        Assert.True(h.GetProperty("gradient_checkpointing").GetBoolean());
        Assert.Equal(0.005, h.GetProperty("learning_rate").GetDouble()); // gpud-tiny's base rate x multiplier 1
        Assert.Equal(0, h.GetProperty("eval_every_steps").GetInt32()); // no validation file
        Assert.Equal(1, job.GetProperty("hyperparameters").GetProperty("batch_size").GetInt32());
    }

    [Fact]
    public async Task Queued_jobs_show_their_position_and_200_concurrent_creates_are_all_accepted_in_order()
    {
        using var gpud = new GpudFactory(NoDevice);
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();

        var created = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => client.CreateJobAsync(file)));
        var ids = created.Select(j => j.GetProperty("id").GetString()!).ToList();
        Assert.Equal(200, ids.Distinct().Count());

        // Listing newest first, page by page, returns every job once, in reverse creation order.
        var listed = new List<JsonElement>();
        string? after = null;
        do
        {
            var page = await (await client.GetAsync("/v1/fine_tuning/jobs?limit=50" + (after is null ? "" : $"&after={after}"))).Json();
            listed.AddRange(page.GetProperty("data").EnumerateArray());
            after = page.GetProperty("has_more").GetBoolean() ? listed[^1].GetProperty("id").GetString() : null;
        }
        while (after is not null);
        Assert.Equal(ids.ToHashSet(), listed.Select(j => j.GetProperty("id").GetString()!).ToHashSet());
        Assert.Equal(listed.Select(j => j.GetProperty("created_at").GetInt64()).Order().Reverse(), listed.Select(j => j.GetProperty("created_at").GetInt64()));

        // With no device free, every job queues; positions are 1..200 in the order they were created (listed oldest last).
        await client.WaitForJobAsync(listed[0].GetProperty("id").GetString()!, j => j.Status() == "queued" && j.GetProperty("queue_position").ValueKind == JsonValueKind.Number, 120);
        var oldestFirst = new List<int>();
        foreach (var job in listed.AsEnumerable().Reverse())
            oldestFirst.Add((await client.GetJobAsync(job.GetProperty("id").GetString()!)).GetProperty("queue_position").GetInt32());
        Assert.Equal(Enumerable.Range(1, 200), oldestFirst);
    }

    [Fact]
    public async Task Jobs_are_listed_by_metadata_and_isolated_per_project()
    {
        using var gpud = new GpudFactory(new Dictionary<string, string?>
        {
            ["Gpud:ApiKeys:0:Key"] = "sk-team-a-000000000000", ["Gpud:ApiKeys:0:Project"] = "team-a",
            ["Gpud:ApiKeys:1:Key"] = "sk-team-b-000000000000", ["Gpud:ApiKeys:1:Project"] = "team-b",
            ["Gpud:Devices:0:Name"] = "cuda:7",
        });
        var a = gpud.Client("sk-team-a-000000000000");
        var b = gpud.Client("sk-team-b-000000000000");
        var file = await a.UploadTrainingFileAsync();
        async Task<string> Create(string env)
        {
            var response = await a.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = "gpud-tiny", training_file = file, metadata = new Dictionary<string, string> { ["env"] = env, ["team.name"] = "a" } });
            return (await response.Json()).GetProperty("id").GetString()!;
        }
        var prod = await Create("prod");
        var dev = await Create("dev");

        var filtered = await (await a.GetAsync("/v1/fine_tuning/jobs?metadata[env]=prod")).Json();
        Assert.Equal([prod], filtered.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("id").GetString()));
        Assert.Equal("prod", filtered.GetProperty("data")[0].GetProperty("metadata").GetProperty("env").GetString());
        var dotted = await (await a.GetAsync("/v1/fine_tuning/jobs?metadata[team.name]=a")).Json();
        Assert.Equal([dev, prod], dotted.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("id").GetString()));

        // Team B sees none of it, and team A's file is not theirs to train on.
        Assert.Empty((await (await b.GetAsync("/v1/fine_tuning/jobs")).Json()).GetProperty("data").EnumerateArray());
        await (await b.GetAsync($"/v1/fine_tuning/jobs/{prod}")).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.GetAsync($"/v1/fine_tuning/jobs/{prod}/events")).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.PostAsync($"/v1/fine_tuning/jobs/{prod}/cancel", null)).AssertError(HttpStatusCode.NotFound, "id");
        await (await b.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = "gpud-tiny", training_file = file })).AssertError(HttpStatusCode.NotFound, "training_file");
        Assert.Equal("team-a", (await a.GetJobAsync(prod)).GetProperty("organization_id").GetString());
    }

    [Fact]
    public async Task Bad_data_fails_the_job_alone_with_openai_error_codes_and_the_next_job_runs()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var tooFew = await client.UploadTrainingFileAsync(Jobs.CapitalsJsonl(5));
        var good = await client.UploadTrainingFileAsync();

        var failing = (await client.CreateJobAsync(tooFew)).GetProperty("id").GetString()!;
        var next = (await client.CreateJobAsync(good, new { n_epochs = 1, batch_size = 10 })).GetProperty("id").GetString()!;

        var failed = await client.WaitForJobAsync(failing);
        Assert.Equal("failed", failed.Status());
        var error = failed.GetProperty("error");
        Assert.Equal(("invalid_n_examples", "training_file"), (error.GetProperty("code").GetString(), error.GetProperty("param").GetString()));
        Assert.Contains("at least 10 examples", error.GetProperty("message").GetString());
        var last = (await client.AllEventsAsync(failing))[^1];
        Assert.Equal("error", last.GetProperty("level").GetString());
        Assert.Equal("succeeded", (await client.WaitForJobAsync(next)).Status());

        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("gpud_fine_tuning_job_failures_total{code=\"invalid_n_examples\"}", metrics);
        Assert.Contains("gpud_fine_tuning_jobs{status=\"succeeded\"}", metrics);
        Assert.Contains("gpud_fine_tuning_trained_tokens_total{device=\"cpu\"}", metrics);
        Assert.Contains("gpud_fine_tuning_queue_wait_seconds_count", metrics);
        Assert.Contains("gpud_fine_tuning_job_duration_seconds_count{outcome=\"succeeded\"}", metrics);
        Assert.Contains("gpud_fine_tuning_checkpoints_total", metrics);
        Assert.Contains("gpud_training_loss{device=\"cpu\"}", metrics);
        Assert.DoesNotContain(next, metrics); // job ids are never labels
    }

    [Fact]
    public async Task Cost_is_estimated_from_device_time_and_truncated_examples_are_a_warning()
    {
        using var gpud = new GpudFactory(new Dictionary<string, string?>
        {
            ["Gpud:Devices:0:Name"] = "cpu", ["Gpud:Devices:0:HourlyPrice"] = "3.6", ["Gpud:Training:MaxSequenceLength"] = "64",
        });
        var client = gpud.Client();
        var longAnswer = JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = "Tell me everything." }, new { role = "assistant", content = new string('x', 400) } } });
        var file = await client.UploadTrainingFileAsync(Jobs.CapitalsJsonl() + longAnswer + "\n");

        var id = (await client.CreateJobAsync(file, new { n_epochs = 1, batch_size = 7 })).GetProperty("id").GetString()!;
        var job = await client.WaitForJobAsync(id);

        Assert.Equal("succeeded", job.Status());
        var cost = job.GetProperty("cost");
        Assert.Equal(3.6, cost.GetProperty("hourly_price").GetDouble());
        Assert.True(cost.GetProperty("accrued").GetDouble() > 0);
        Assert.Equal(cost.GetProperty("accrued").GetDouble(), cost.GetProperty("estimated_total").GetDouble());
        Assert.Equal(cost.GetProperty("device_hours").GetDouble() * 3.6, cost.GetProperty("accrued").GetDouble(), 9);
        Assert.Equal(1, job.GetProperty("dataset").GetProperty("truncated_examples").GetInt32());
        var warning = (await client.AllEventsAsync(id)).Single(e => e.GetProperty("level").GetString() == "warn");
        Assert.Equal("1 training examples are longer than 64 tokens and were truncated", warning.GetProperty("message").GetString());
    }
}
