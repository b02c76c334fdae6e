using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// The Batch API as a client drives it: upload a JSONL of requests with purpose <c>batch</c>, create a batch, poll it,
/// read its output and error files. Lines are answered by the routes' own code; bad files fail before anything runs;
/// cancel, expiry and restarts end with every answered line accounted for exactly once.
/// </summary>
public sealed class BatchesApiTests
{
    /// <summary>Lines in a batch meant to be stopped part-way (a few seconds of work, one line at a time).</summary>
    private const int Long = 200;

    private static readonly Dictionary<string, string?> OneAtATime = new() { ["Gpud:Inference:BatchRequestsInFlight"] = "1" };

    [Fact]
    public async Task A_batch_answers_each_line_as_its_route_would_and_splits_answers_from_errors()
    {
        using var gpud = new GpudFactory(OneAtATime);
        var client = gpud.Client();
        var bodies = Enumerable.Range(0, 3).Select(i => new { model = "gpud-tiny", messages = new[] { new { role = "user", content = $"Hello {i}" } }, max_tokens = 6, temperature = 0 }).ToList();
        var lines = bodies.Select((b, i) => Line($"req-{i}", "/v1/chat/completions", b)).ToList();
        lines.Insert(1, Line("unknown-model", "/v1/chat/completions", new { model = "nope", messages = new[] { new { role = "user", content = "x" } } }));
        lines.Add(Line("streaming", "/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, stream = true }));
        var file = await UploadAsync(client, lines);

        var created = await CreateAsync(client, file, "/v1/chat/completions", metadata: new { run = "eval-7" });
        Assert.Equal("batch", created.GetProperty("object").GetString());
        Assert.Equal("validating", created.GetProperty("status").GetString());
        Assert.Equal("eval-7", created.GetProperty("metadata").GetProperty("run").GetString());
        var batch = await WaitAsync(client, created.GetProperty("id").GetString()!, "completed");

        var counts = batch.GetProperty("request_counts");
        Assert.Equal((5, 3, 2), (counts.GetProperty("total").GetInt32(), counts.GetProperty("completed").GetInt32(), counts.GetProperty("failed").GetInt32()));
        Assert.Equal(JsonValueKind.Null, batch.GetProperty("model").ValueKind); // the lines name two models
        foreach (var stamp in new[] { "in_progress_at", "finalizing_at", "completed_at" }) Assert.Equal(JsonValueKind.Number, batch.GetProperty(stamp).ValueKind);

        var output = await LinesOf(client, batch.GetProperty("output_file_id").GetString()!);
        Assert.Equal(["req-0", "req-1", "req-2"], output.Select(l => l.GetProperty("custom_id").GetString()));
        long promptTokens = 0, completionTokens = 0;
        for (var i = 0; i < 3; i++)
        {
            var response = output[i].GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            Assert.Equal(JsonValueKind.Null, output[i].GetProperty("error").ValueKind);
            var body = response.GetProperty("body");
            Assert.Equal("chat.completion", body.GetProperty("object").GetString());
            var direct = await (await client.PostAsJsonAsync("/v1/chat/completions", bodies[i])).Json();
            Assert.Equal(Content(direct), Content(body));
            promptTokens += body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
            completionTokens += body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        }
        var usage = batch.GetProperty("usage");
        Assert.Equal((promptTokens, completionTokens, promptTokens + completionTokens),
            (usage.GetProperty("input_tokens").GetInt64(), usage.GetProperty("output_tokens").GetInt64(), usage.GetProperty("total_tokens").GetInt64()));

        var errors = await LinesOf(client, batch.GetProperty("error_file_id").GetString()!);
        Assert.Equal(["unknown-model", "streaming"], errors.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.Equal((404, "model_not_found"), Failure(errors[0]));
        Assert.Equal((400, "invalid_value"), Failure(errors[1]));

        var outputFile = await (await client.GetAsync($"/v1/files/{batch.GetProperty("output_file_id").GetString()}")).Json();
        Assert.Equal("batch_output", outputFile.GetProperty("purpose").GetString());
        var listed = await (await client.GetAsync("/v1/batches?limit=1")).Json();
        Assert.Equal(batch.GetProperty("id").GetString(), listed.GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task Completions_and_responses_batches_run_through_their_own_routes()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var completions = await UploadAsync(client, [Line("c", "/v1/completions", new { model = "gpud-tiny", prompt = new[] { "One", "Two" }, max_tokens = 3, n = 2 })]);
        var responses = await UploadAsync(client, [Line("r", "/v1/responses", new { model = "gpud-tiny", input = "Hi", max_output_tokens = 4 })]);
        var c = await CreateAsync(client, completions, "/v1/completions");
        var r = await CreateAsync(client, responses, "/v1/responses");

        var cDone = await WaitAsync(client, c.GetProperty("id").GetString()!, "completed");
        Assert.Equal("gpud-tiny", cDone.GetProperty("model").GetString());
        var completion = (await LinesOf(client, cDone.GetProperty("output_file_id").GetString()!)).Single().GetProperty("response").GetProperty("body");
        Assert.Equal("text_completion", completion.GetProperty("object").GetString());
        Assert.Equal(4, completion.GetProperty("choices").GetArrayLength()); // 2 prompts × n 2

        var rDone = await WaitAsync(client, r.GetProperty("id").GetString()!, "completed");
        var response = (await LinesOf(client, rDone.GetProperty("output_file_id").GetString()!)).Single().GetProperty("response").GetProperty("body");
        Assert.Equal("response", response.GetProperty("object").GetString());
        var stored = await client.GetAsync($"/v1/responses/{response.GetProperty("id").GetString()}");
        Assert.Equal(HttpStatusCode.OK, stored.StatusCode); // stored, as the route stores it, so it can be continued
        Assert.Equal(response.GetProperty("usage").GetProperty("output_tokens").GetInt64(), rDone.GetProperty("usage").GetProperty("output_tokens").GetInt64());
    }

    [Fact]
    public async Task A_malformed_input_file_fails_the_batch_before_any_request_runs_and_names_each_bad_line()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var good = new { model = "gpud-tiny", prompt = "x", max_tokens = 2 };
        var file = await UploadAsync(client,
        [
            Line("a", "/v1/completions", good),
            "{not json",
            Line("b", "/v1/chat/completions", good),
            Line("a", "/v1/completions", good),
            JsonSerializer.Serialize(new { custom_id = "c", method = "GET", url = "/v1/completions", body = good }),
            JsonSerializer.Serialize(new { method = "POST", url = "/v1/completions", body = good }),
        ]);
        var created = await CreateAsync(client, file, "/v1/completions");
        var batch = await WaitAsync(client, created.GetProperty("id").GetString()!, "failed");

        var errors = batch.GetProperty("errors");
        Assert.Equal("list", errors.GetProperty("object").GetString());
        Assert.Equal(
            [("invalid_json_line", 2), ("mismatched_endpoint", 3), ("duplicate_custom_id", 4), ("invalid_method", 5), ("invalid_custom_id", 6)],
            errors.GetProperty("data").EnumerateArray().Select(e => (e.GetProperty("code").GetString(), e.GetProperty("line").GetInt32())));
        Assert.Equal(JsonValueKind.Null, batch.GetProperty("output_file_id").ValueKind);
        Assert.Equal(JsonValueKind.Null, batch.GetProperty("error_file_id").ValueKind);
        Assert.Equal(0, batch.GetProperty("request_counts").GetProperty("completed").GetInt32());
        Assert.Equal(JsonValueKind.Number, batch.GetProperty("failed_at").ValueKind);
    }

    [Fact]
    public async Task Bad_create_requests_are_openai_style_errors()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var batchFile = await UploadAsync(client, [Line("a", "/v1/completions", new { model = "gpud-tiny", prompt = "x" })]);
        var trainingFile = await client.UploadTrainingFileAsync();

        async Task<HttpResponseMessage> Create(object body) => await client.PostAsJsonAsync("/v1/batches", body);
        await (await Create(new { input_file_id = trainingFile, endpoint = "/v1/completions", completion_window = "24h" }))
            .AssertError(HttpStatusCode.BadRequest, "input_file_id", "invalid_file_purpose");
        await (await Create(new { input_file_id = batchFile, endpoint = "/v1/embeddings", completion_window = "24h" }))
            .AssertError(HttpStatusCode.BadRequest, "endpoint", "invalid_value");
        await (await Create(new { input_file_id = batchFile, endpoint = "/v1/completions", completion_window = "1h" }))
            .AssertError(HttpStatusCode.BadRequest, "completion_window", "invalid_value");
        await (await Create(new { input_file_id = batchFile, endpoint = "/v1/completions" }))
            .AssertError(HttpStatusCode.BadRequest, "completion_window", "missing_required_parameter");
        await (await Create(new { input_file_id = batchFile, endpoint = "/v1/completions", completion_window = "24h", priority = "high" }))
            .AssertError(HttpStatusCode.BadRequest, "priority", "unknown_parameter");
        await (await Create(new { input_file_id = batchFile, endpoint = "/v1/completions", completion_window = "24h", output_expires_after = new { anchor = "created_at", seconds = 60 } }))
            .AssertError(HttpStatusCode.BadRequest, "output_expires_after.seconds", "integer_out_of_range");
        await (await Create(new { input_file_id = "file-missing", endpoint = "/v1/completions", completion_window = "24h" }))
            .AssertError(HttpStatusCode.NotFound, "input_file_id");
        await (await client.GetAsync("/v1/batches/batch_missing")).AssertError(HttpStatusCode.NotFound, "id");
        await (await client.GetAsync("/v1/batches?limit=0")).AssertError(HttpStatusCode.BadRequest, "limit", "integer_out_of_range");
        Assert.Empty((await (await client.GetAsync("/v1/batches")).Json()).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task A_cancelled_batch_stops_and_keeps_the_answers_it_has()
    {
        using var gpud = new GpudFactory(OneAtATime);
        var client = gpud.Client();
        var file = await UploadAsync(client, LongLines());
        var id = (await CreateAsync(client, file, "/v1/completions")).GetProperty("id").GetString()!;
        await WaitAsync(client, id, "in_progress", b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 2);

        var cancelling = await (await client.PostAsync($"/v1/batches/{id}/cancel", null)).Json();
        Assert.Contains(cancelling.GetProperty("status").GetString(), new[] { "cancelling", "cancelled" });
        var batch = await WaitAsync(client, id, "cancelled");
        var completed = batch.GetProperty("request_counts").GetProperty("completed").GetInt32();
        Assert.InRange(completed, 2, Long - 1);
        Assert.Equal(JsonValueKind.Number, batch.GetProperty("cancelling_at").ValueKind);
        var output = await LinesOf(client, batch.GetProperty("output_file_id").GetString()!);
        Assert.Equal(completed, output.Count);
        Assert.Equal(Enumerable.Range(0, completed).Select(i => $"q{i}"), output.Select(l => l.GetProperty("custom_id").GetString()));

        await (await client.PostAsync($"/v1/batches/{id}/cancel", null)).AssertError(HttpStatusCode.BadRequest, "id", "invalid_batch_state");
        Assert.False(Directory.Exists(Path.Combine(gpud.DataDir, "batches", id)), "an ended batch leaves no journal behind");
    }

    [Fact]
    public async Task A_batch_waiting_behind_another_is_cancelled_at_once()
    {
        using var gpud = new GpudFactory(OneAtATime);
        var client = gpud.Client();
        var lines = LongLines().ToList();
        var running = (await CreateAsync(client, await UploadAsync(client, lines), "/v1/completions")).GetProperty("id").GetString()!;
        var waiting = (await CreateAsync(client, await UploadAsync(client, lines.Take(3)), "/v1/completions")).GetProperty("id").GetString()!;
        await WaitAsync(client, waiting, "in_progress");

        await client.PostAsync($"/v1/batches/{waiting}/cancel", null);
        var cancelled = await WaitAsync(client, waiting, "cancelled");
        Assert.Equal(0, cancelled.GetProperty("request_counts").GetProperty("completed").GetInt32());
        Assert.Equal(JsonValueKind.Null, cancelled.GetProperty("output_file_id").ValueKind);
        Assert.Equal("in_progress", (await (await client.GetAsync($"/v1/batches/{running}")).Json()).GetProperty("status").GetString());
    }

    [Fact]
    public async Task After_a_restart_a_batch_goes_on_where_it_stopped_and_answers_every_line_once()
    {
        using var dir = new TempDir();
        string id;
        int before;
        using (var first = new GpudFactory(OneAtATime, dir.Path))
        {
            var client = first.Client();
            var file = await UploadAsync(client, LongLines());
            id = (await CreateAsync(client, file, "/v1/completions")).GetProperty("id").GetString()!;
            await WaitAsync(client, id, "in_progress", b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 3);
        }
        var journal = Path.Combine(dir.Path, "batches", id, "results.jsonl");
        before = File.ReadAllLines(journal).Length;
        Assert.InRange(before, 3, Long - 1);
        File.AppendAllText(journal, "{\"index\":199,\"succ"); // what kill -9 mid-write leaves: a torn last line

        using var second = new GpudFactory(OneAtATime, dir.Path);
        var again = second.Client();
        var batch = await WaitAsync(again, id, "completed");
        if (batch.GetProperty("error_file_id").GetString() is { } errors) Assert.Fail($"lines failed: {await again.GetStringAsync($"/v1/files/{errors}/content")}");
        Assert.Equal(Long, batch.GetProperty("request_counts").GetProperty("completed").GetInt32());
        var output = await LinesOf(again, batch.GetProperty("output_file_id").GetString()!);
        Assert.Equal(Enumerable.Range(0, Long).Select(i => $"q{i}"), output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, l => Assert.Equal(200, l.GetProperty("response").GetProperty("status_code").GetInt32()));
    }

    [Fact]
    public async Task Requests_left_when_the_window_closes_expire_into_the_error_file()
    {
        var time = new ManualTime(DateTimeOffset.UtcNow);
        using var gpud = new GpudFactory(OneAtATime, time: time);
        var client = gpud.Client();
        var file = await UploadAsync(client, LongLines());
        var id = (await CreateAsync(client, file, "/v1/completions")).GetProperty("id").GetString()!;
        await WaitAsync(client, id, "in_progress", b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 1);
        time.Advance(TimeSpan.FromHours(24));

        var batch = await WaitAsync(client, id, "expired");
        var counts = batch.GetProperty("request_counts");
        var completed = counts.GetProperty("completed").GetInt32();
        Assert.InRange(completed, 1, Long - 1);
        Assert.Equal(Long - completed, counts.GetProperty("failed").GetInt32());
        var errors = await LinesOf(client, batch.GetProperty("error_file_id").GetString()!);
        Assert.Equal(Long - completed, errors.Count);
        Assert.All(errors, l =>
        {
            Assert.Equal(JsonValueKind.Null, l.GetProperty("response").ValueKind);
            Assert.Equal("batch_expired", l.GetProperty("error").GetProperty("code").GetString());
        });
        Assert.Equal(Enumerable.Range(completed, Long - completed).Select(i => $"q{i}"), errors.Select(l => l.GetProperty("custom_id").GetString()));
    }

    [Fact]
    public async Task An_interactive_request_is_served_before_batch_requests_that_wait_for_a_row()
    {
        // One row: every batch request in flight waits for it; a live request must not wait behind them.
        using var gpud = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Inference:MaxBatchSize"] = "1", ["Gpud:Inference:BatchRequestsInFlight"] = "8" });
        var client = gpud.Client();
        var file = await UploadAsync(client, LongLines());
        var id = (await CreateAsync(client, file, "/v1/completions")).GetProperty("id").GetString()!;
        await WaitAsync(client, id, "in_progress", b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 1);

        var answeredBefore = await BatchAnswers(client);
        var live = await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = "now", max_tokens = 4 });
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        var answeredDuring = await BatchAnswers(client) - answeredBefore;
        // At most the batch request holding the row (and one that took it as the live request arrived) finish first;
        // behind the 7 queued ones, it would have waited for all of them.
        Assert.True(answeredDuring <= 2, $"{answeredDuring} batch requests were answered while the live request waited");
    }

    private static async Task<double> BatchAnswers(HttpClient client)
    {
        var metrics = await client.GetStringAsync("/metrics");
        return metrics.Split('\n').Where(l => l.StartsWith("gpud_batch_requests_total{", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// <see cref="Long"/> lines of 64 tokens each: greedy, since gpud-tiny's random weights then repeat a token rather
    /// than end early, so the batch takes seconds and can be seen part-way.
    /// </summary>
    private static IEnumerable<string> LongLines() =>
        Enumerable.Range(0, Long).Select(i => Line($"q{i}", "/v1/completions", new { model = "gpud-tiny", prompt = $"n {i}", max_tokens = 64, temperature = 0 }));

    private static string Line(string customId, string url, object body) =>
        JsonSerializer.Serialize(new { custom_id = customId, method = "POST", url, body });

    private static async Task<string> UploadAsync(HttpClient client, IEnumerable<string> lines)
    {
        var upload = await client.PostAsync("/v1/files", Requests.UploadForm(string.Join('\n', lines) + "\n", "batch", "requests.jsonl"));
        Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        return (await upload.Json()).GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> CreateAsync(HttpClient client, string file, string endpoint, object? metadata = null)
    {
        var response = await client.PostAsJsonAsync("/v1/batches", new { input_file_id = file, endpoint, completion_window = "24h", metadata });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Json();
    }

    private static async Task<JsonElement> WaitAsync(HttpClient client, string id, string status, Func<JsonElement, bool>? until = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            var batch = await (await client.GetAsync($"/v1/batches/{id}")).Json();
            if (batch.GetProperty("status").GetString() == status && (until is null || until(batch))) return batch;
            if (DateTime.UtcNow > deadline) Assert.Fail($"batch {id} did not reach {status}: {batch}");
            await Task.Delay(50);
        }
    }

    private static async Task<List<JsonElement>> LinesOf(HttpClient client, string fileId)
    {
        var text = await client.GetStringAsync($"/v1/files/{fileId}/content");
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
    }

    private static string? Content(JsonElement chat) => chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

    private static (int Status, string? Code) Failure(JsonElement line)
    {
        var response = line.GetProperty("response");
        return (response.GetProperty("status_code").GetInt32(), response.GetProperty("body").GetProperty("error").GetProperty("code").GetString());
    }
}
