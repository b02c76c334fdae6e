using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// What an ended job leaves on disk: its checkpoints, still servable, without the optimizer and trainer state only a
/// resume reads (most of a checkpoint's size); nothing else. Unfinished jobs keep everything.
/// </summary>
public sealed class FinishedJobStorageTests
{
    private static readonly string[] AdapterFiles = ["adapter_config.json", "adapter_model.safetensors"];

    /// <summary>150 steps of batch 4.</summary>
    private static readonly object LongRun = new { n_epochs = 30, batch_size = 4 };

    [Fact]
    public async Task A_cancelled_job_keeps_servable_checkpoints_and_drops_its_resume_state()
    {
        using var gpud = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Training:MetricsEventIntervalMs"] = "0" });
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync(Jobs.CapitalsJsonl(60));
        // 15 steps an epoch, visible checkpoints at epoch ends: paused early in the second epoch, the job's resume
        // point is a directory of its own, next to the visible checkpoint at step 15.
        var id = (await client.CreateJobAsync(file, new { n_epochs = 10, batch_size = 4 })).GetProperty("id").GetString()!;
        await client.WaitForJobAsync(id, j => j.Step() >= 16);
        await client.PostAsync($"/v1/fine_tuning/jobs/{id}/pause", null);
        await client.WaitForJobAsync(id, j => j.Status() == "paused" && j.GetProperty("stage").ValueKind == JsonValueKind.Null);
        var root = Path.Combine(gpud.DataDir, "jobs", id, "checkpoints");
        var pausedAt = Directory.GetDirectories(root).Select(d => int.Parse(Path.GetFileName(d)["step-".Length..], System.Globalization.CultureInfo.InvariantCulture)).Max();
        Assert.True(pausedAt is > 15 and < 30, $"paused at step {pausedAt}");
        Assert.True(File.Exists(Path.Combine(root, $"step-{pausedAt}", "optimizer.safetensors")), "a paused job keeps what its resume reads");

        Assert.Equal("cancelled", (await (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null)).Json()).Status());
        var checkpoints = (await (await client.GetAsync($"/v1/fine_tuning/jobs/{id}/checkpoints")).Json()).GetProperty("data").EnumerateArray().ToList();
        // Freed at once, or, if the pausing runner had not let go of the job yet, as it does.
        await Eventually(() => Directory.GetDirectories(root).Length == 1 && OnlyAdapterFiles(root));
        Assert.Equal([15], checkpoints.Select(c => c.GetProperty("step_number").GetInt32()));
        Assert.Equal(["step-15"], Directory.GetDirectories(root).Select(Path.GetFileName));
        Assert.Equal(AdapterFiles, Directory.GetFiles(Path.Combine(root, "step-15")).Select(Path.GetFileName).Order());
        var model = checkpoints[0].GetProperty("fine_tuned_model_checkpoint").GetString();
        var answer = await client.PostAsJsonAsync("/v1/completions", new { model, prompt = "France", max_tokens = 3 });
        Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_succeeded_job_keeps_its_adapter_and_checkpoints_and_nothing_a_resume_reads()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var id = (await client.CreateJobAsync(file, new { n_epochs = 3, batch_size = 4 })).GetProperty("id").GetString()!;
        Assert.Equal("succeeded", (await client.WaitForJobAsync(id)).Status());

        // The runner frees the resume state after it has committed the job's end (a crash in between must still
        // find a resumable job), so the clean-up can trail the status a user sees by a moment.
        var root = Path.Combine(gpud.DataDir, "jobs", id, "checkpoints");
        await Eventually(() => OnlyAdapterFiles(root));
        Assert.Equal(["step-10", "step-15", "step-5"], Directory.GetDirectories(root).Select(Path.GetFileName).Order());
        foreach (var directory in Directory.GetDirectories(root))
            Assert.Equal(AdapterFiles, Directory.GetFiles(directory).Select(Path.GetFileName).Order());
        Assert.Equal(AdapterFiles, Directory.GetFiles(Path.Combine(gpud.DataDir, "adapters", id)).Select(Path.GetFileName).Order());
    }

    [Fact]
    public async Task Start_up_frees_what_an_earlier_run_left_of_ended_jobs_and_leaves_a_paused_job_whole()
    {
        using var dir = new TempDir();
        string ended, paused;
        using (var first = new GpudFactory(dataDir: dir.Path))
        {
            var client = first.Client();
            var file = await client.UploadTrainingFileAsync();
            ended = (await client.CreateJobAsync(file, new { n_epochs = 1, batch_size = 10 })).GetProperty("id").GetString()!;
            Assert.Equal("succeeded", (await client.WaitForJobAsync(ended)).Status());
            paused = (await client.CreateJobAsync(file, LongRun)).GetProperty("id").GetString()!;
            await client.WaitForJobAsync(paused, j => j.Step() >= 3);
            await client.PostAsync($"/v1/fine_tuning/jobs/{paused}/pause", null);
            await client.WaitForJobAsync(paused, j => j.Status() == "paused" && j.GetProperty("stage").ValueKind == JsonValueKind.Null);
        }

        // What a crash between the job's end and the clean-up (or a gpud before this one) leaves behind.
        var checkpoints = Path.Combine(dir.Path, "jobs", ended, "checkpoints");
        var kept = Path.Combine(checkpoints, "step-2");
        File.WriteAllBytes(Path.Combine(kept, "optimizer.safetensors"), new byte[4096]);
        File.WriteAllText(Path.Combine(kept, "trainer_state.json"), "{}");
        Directory.CreateDirectory(Path.Combine(checkpoints, "step-1"));
        Directory.CreateDirectory(Path.Combine(checkpoints, ".step-3.0123456789abcdef.tmp"));
        Directory.CreateDirectory(Path.Combine(dir.Path, "jobs", ended, "parent"));
        var pausedFiles = Directory.GetFiles(Path.Combine(dir.Path, "jobs", paused), "*", SearchOption.AllDirectories).Order().ToList();
        Assert.Contains(pausedFiles, f => f.EndsWith("optimizer.safetensors", StringComparison.Ordinal));

        using var second = new GpudFactory(dataDir: dir.Path);
        var again = second.Client();
        Assert.Equal("paused", (await again.GetJobAsync(paused)).Status()); // started, and the sweep runs before the queue
        await Eventually(() => !File.Exists(Path.Combine(kept, "optimizer.safetensors")));

        Assert.Equal(["step-2"], Directory.GetDirectories(checkpoints).Select(Path.GetFileName));
        Assert.Equal(AdapterFiles, Directory.GetFiles(kept).Select(Path.GetFileName).Order());
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "jobs", ended, "parent")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "jobs", ended, "metrics.csv")));
        Assert.Equal(pausedFiles, Directory.GetFiles(Path.Combine(dir.Path, "jobs", paused), "*", SearchOption.AllDirectories).Order());
        var model = (await (await again.GetAsync($"/v1/fine_tuning/jobs/{ended}/checkpoints")).Json()).GetProperty("data")[0].GetProperty("fine_tuned_model_checkpoint").GetString();
        var answer = await again.PostAsJsonAsync("/v1/completions", new { model, prompt = "France", max_tokens = 3 });
        Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
    }

    private static bool OnlyAdapterFiles(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).All(f => AdapterFiles.Contains(Path.GetFileName(f)));

    private static async Task Eventually(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition() && DateTime.UtcNow < deadline) await Task.Delay(25);
    }
}
