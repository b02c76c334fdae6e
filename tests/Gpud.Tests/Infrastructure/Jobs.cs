using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Gpud.Tests.Infrastructure;

/// <summary>Driving fine-tuning jobs over HTTP the way a client does: upload, create, poll.</summary>
public static class Jobs
{
    /// <summary>The capitals set (<see cref="Capitals"/>) as a chat training file.</summary>
    public static string CapitalsJsonl(int examples = 20) =>
        string.Concat(Enumerable.Range(0, examples).Select(i => JsonSerializer.Serialize(Capitals.Chat(i)) + "\n"));

    /// <summary>The capitals set as a preference (DPO) training file: each right capital preferred over a wrong one.</summary>
    public static string CapitalPreferencesJsonl(int examples = 20) =>
        string.Concat(Enumerable.Range(0, examples).Select(i => JsonSerializer.Serialize(Capitals.Preference(i)) + "\n"));

    public static async Task<string> UploadTrainingFileAsync(this HttpClient client, string? jsonl = null)
    {
        var response = await client.PostAsync("/v1/files", Requests.UploadForm(jsonl ?? CapitalsJsonl()));
        response.EnsureSuccessStatusCode();
        return (await response.Json()).GetProperty("id").GetString()!;
    }

    /// <summary>Creates a job on <paramref name="model"/> (gpud-tiny) with these hyperparameters (method.{method}.hyperparameters).</summary>
    public static async Task<JsonElement> CreateJobAsync(this HttpClient client, string trainingFile, object? hyperparameters = null, long seed = 1, string? suffix = null,
        string method = "supervised", string model = "gpud-tiny")
    {
        var response = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new Dictionary<string, object?>
        {
            ["model"] = model,
            ["training_file"] = trainingFile,
            ["seed"] = seed,
            ["suffix"] = suffix,
            ["method"] = new Dictionary<string, object>
            {
                ["type"] = method,
                [method] = new { hyperparameters = hyperparameters ?? new { n_epochs = 2, batch_size = 4 } },
            },
        });
        var body = await response.Json();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        return body;
    }

    public static async Task<JsonElement> GetJobAsync(this HttpClient client, string id) =>
        await (await client.GetAsync($"/v1/fine_tuning/jobs/{id}")).Json();

    /// <summary>Polls the job until <paramref name="until"/> holds (default: finished), failing after the timeout.</summary>
    public static async Task<JsonElement> WaitForJobAsync(this HttpClient client, string id, Func<JsonElement, bool>? until = null, int timeoutSeconds = 60)
    {
        until ??= j => j.GetProperty("status").GetString() is "succeeded" or "failed" or "cancelled";
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var job = await client.GetJobAsync(id);
            if (until(job)) return job;
            if (watch.Elapsed.TotalSeconds > timeoutSeconds) throw new TimeoutException($"job {id} did not get there in {timeoutSeconds} s: {job}");
            await Task.Delay(50);
        }
    }

    public static int Step(this JsonElement job) =>
        job.GetProperty("progress").ValueKind == JsonValueKind.Object ? job.GetProperty("progress").GetProperty("step").GetInt32() : 0;

    public static string Status(this JsonElement job) => job.GetProperty("status").GetString()!;

    /// <summary>Every event of a job, oldest first, following the <c>after</c> cursor as the SDKs do.</summary>
    public static async Task<List<JsonElement>> AllEventsAsync(this HttpClient client, string id)
    {
        var events = new List<JsonElement>();
        string? after = null;
        while (true)
        {
            var page = await (await client.GetAsync($"/v1/fine_tuning/jobs/{id}/events?limit=100" + (after is null ? "" : $"&after={after}"))).Json();
            var data = page.GetProperty("data").EnumerateArray().ToList();
            events.AddRange(data);
            if (!page.GetProperty("has_more").GetBoolean()) break;
            after = data[^1].GetProperty("id").GetString();
        }
        events.Reverse();
        return events;
    }

    public static async Task<List<string>> EventMessagesAsync(this HttpClient client, string id) =>
        (await client.AllEventsAsync(id)).Select(e => e.GetProperty("message").GetString()!).ToList();
}
