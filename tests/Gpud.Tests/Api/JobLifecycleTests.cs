using System.Net;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>The queue and a job's life: FIFO order, cancel, pause/resume, kill -9 and SIGTERM, on the CPU slot.</summary>
public sealed class JobLifecycleTests
{
    /// <summary>150 steps of batch 4: long enough to act on mid-run, seconds on this machine.</summary>
    private static readonly object LongRun = new { n_epochs = 30, batch_size = 4, checkpoint_every_steps = 5 };

    [Fact]
    public async Task With_one_slot_five_jobs_start_in_creation_order_and_never_overlap()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++) ids.Add((await client.CreateJobAsync(file, new { n_epochs = 2, batch_size = 10 }, seed: i)).GetProperty("id").GetString()!);

        var seenRunning = new List<string>();
        while (true)
        {
            var jobs = (await (await client.GetAsync("/v1/fine_tuning/jobs?limit=5")).Json()).GetProperty("data").EnumerateArray()
                .Reverse().ToList(); // oldest first
            var statuses = jobs.Select(j => j.Status()).ToList();
            var running = statuses.IndexOf("running");
            Assert.True(statuses.Count(s => s == "running") <= 1, string.Join(",", statuses));
            if (running >= 0)
            {
                // Everything older has finished; nothing newer has started.
                Assert.All(statuses.Take(running), s => Assert.Equal("succeeded", s));
                Assert.All(statuses.Skip(running + 1), s => Assert.Contains(s, new[] { "validating_files", "queued" }));
                if (!seenRunning.Contains(ids[running])) seenRunning.Add(ids[running]);
                var queued = jobs.Skip(running + 1).Where(j => j.Status() == "queued").Select(j => j.GetProperty("queue_position").GetInt32()).ToList();
                Assert.Equal(Enumerable.Range(1, queued.Count), queued);
            }
            if (statuses.All(s => s == "succeeded")) break;
            await Task.Delay(20);
        }
        Assert.Equal(ids.Take(seenRunning.Count), seenRunning); // every job seen running was seen in creation order
        foreach (var id in ids) Assert.Single(await client.EventMessagesAsync(id), m => m == "Fine-tuning job started on cpu");
    }

    [Fact]
    public async Task Cancelling_a_running_job_frees_the_slot_and_a_queued_job_never_starts()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var running = (await client.CreateJobAsync(file, LongRun)).GetProperty("id").GetString()!;
        var queued = (await client.CreateJobAsync(file, LongRun)).GetProperty("id").GetString()!;
        var last = (await client.CreateJobAsync(file, new { n_epochs = 1, batch_size = 10 })).GetProperty("id").GetString()!;

        await client.WaitForJobAsync(running, j => j.Step() >= 2);
        Assert.Equal("queued", (await client.GetJobAsync(queued)).Status());
        var cancelledQueued = await (await client.PostAsync($"/v1/fine_tuning/jobs/{queued}/cancel", null)).Json();
        Assert.Equal("cancelled", cancelledQueued.Status());
        var cancelledRunning = await (await client.PostAsync($"/v1/fine_tuning/jobs/{running}/cancel", null)).Json();
        Assert.Equal("cancelled", cancelledRunning.Status());

        // The slot goes to the next job in line; the cancelled ones stay cancelled, and neither made a model.
        Assert.Equal("succeeded", (await client.WaitForJobAsync(last)).Status());
        foreach (var id in new[] { running, queued })
        {
            var job = await client.GetJobAsync(id);
            Assert.Equal("cancelled", job.Status());
            Assert.Equal(JsonValueKind.Null, job.GetProperty("fine_tuned_model").ValueKind);
            Assert.False(Directory.Exists(Path.Combine(gpud.DataDir, "adapters", id)));
            Assert.Equal("Fine-tuning job cancelled", (await client.EventMessagesAsync(id)).Last());
        }
        Assert.DoesNotContain("Fine-tuning job started on cpu", await client.EventMessagesAsync(queued));
        Assert.True((await client.GetJobAsync(running)).Step() < 150);

        // Finished jobs cannot change state: a 400 (the SDKs would retry a 409).
        await (await client.PostAsync($"/v1/fine_tuning/jobs/{last}/cancel", null)).AssertError(HttpStatusCode.BadRequest, "id", "invalid_job_state");
        await (await client.PostAsync($"/v1/fine_tuning/jobs/{running}/resume", null)).AssertError(HttpStatusCode.BadRequest, "id", "invalid_job_state");
        await (await client.PostAsync($"/v1/fine_tuning/jobs/{last}/pause", null)).AssertError(HttpStatusCode.BadRequest, "id", "invalid_job_state");
        await (await client.PostAsync("/v1/fine_tuning/jobs/ftjob-nope/cancel", null)).AssertError(HttpStatusCode.NotFound, "id");
    }

    [Fact]
    public async Task Pause_checkpoints_and_resume_continues_to_the_same_adapter_as_an_uninterrupted_run()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var paused = (await client.CreateJobAsync(file, LongRun, seed: 3)).GetProperty("id").GetString()!;

        await client.WaitForJobAsync(paused, j => j.Step() >= 7);
        var response = await (await client.PostAsync($"/v1/fine_tuning/jobs/{paused}/pause", null)).Json();
        Assert.Equal("paused", response.Status());
        var stopped = await client.WaitForJobAsync(paused, j => j.GetProperty("stage").ValueKind == JsonValueKind.Null);
        var pauseEvent = (await client.EventMessagesAsync(paused)).Single(m => m.StartsWith("Job paused after step", StringComparison.Ordinal));
        var step = int.Parse(pauseEvent.Split(' ')[4].TrimEnd(';'), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(step < 150);
        Assert.True(File.Exists(Path.Combine(gpud.DataDir, "jobs", paused, "checkpoints", $"step-{step}", "trainer_state.json")));
        await Task.Delay(300);
        Assert.Equal("paused", (await client.GetJobAsync(paused)).Status()); // it stays paused
        Assert.Equal(stopped.Step(), (await client.GetJobAsync(paused)).Step());

        var resumed = await (await client.PostAsync($"/v1/fine_tuning/jobs/{paused}/resume", null)).Json();
        Assert.Contains(resumed.Status(), new[] { "queued", "running" });
        Assert.Equal("succeeded", (await client.WaitForJobAsync(paused)).Status());
        Assert.Contains($"Resuming from the checkpoint at step {step}", await client.EventMessagesAsync(paused));

        var straight = (await client.CreateJobAsync(file, LongRun, seed: 3)).GetProperty("id").GetString()!;
        Assert.Equal("succeeded", (await client.WaitForJobAsync(straight)).Status());
        Assert.Equal(Adapter(gpud.DataDir, straight), Adapter(gpud.DataDir, paused));
    }

    [Fact]
    public async Task After_kill_9_the_running_job_resumes_first_from_its_checkpoint_and_ends_with_the_same_adapter()
    {
        using var dir = new TempDir();
        string killed, waiting, file;
        using (var first = await DaemonProcess.StartAsync(dir.Path))
        {
            using var client = first.Client();
            file = await client.UploadTrainingFileAsync();
            killed = (await client.CreateJobAsync(file, LongRun, seed: 9)).GetProperty("id").GetString()!;
            waiting = (await client.CreateJobAsync(file, new { n_epochs = 1, batch_size = 10 })).GetProperty("id").GetString()!;
            await client.WaitForJobAsync(killed, j => j.Step() >= 12);
            first.Kill();
        }

        using var second = await DaemonProcess.StartAsync(dir.Path);
        using var again = second.Client();
        var job = await again.WaitForJobAsync(killed, timeoutSeconds: 120);
        Assert.Equal("succeeded", job.Status());
        var messages = await again.EventMessagesAsync(killed);
        var recovered = messages.Single(m => m.StartsWith("gpud stopped while the job was running", StringComparison.Ordinal));
        var resumedAt = int.Parse(recovered.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(resumedAt >= 10 && resumedAt < 150 && resumedAt % 5 == 0, recovered); // the last periodic checkpoint
        Assert.Contains(messages, m => m.StartsWith("Resuming from the checkpoint at step", StringComparison.Ordinal));
        // It went back to the head: the job queued behind it had not started before it finished.
        Assert.Equal("succeeded", (await again.WaitForJobAsync(waiting)).Status());
        Assert.True((await again.GetJobAsync(waiting)).GetProperty("finished_at").GetInt64() >= job.GetProperty("finished_at").GetInt64());
        Assert.Equal(150, (await again.GetStringAsync($"/v1/files/{job.GetProperty("result_files")[0].GetString()}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length - 1);

        var straight = (await again.CreateJobAsync(file, LongRun, seed: 9)).GetProperty("id").GetString()!;
        Assert.Equal("succeeded", (await again.WaitForJobAsync(straight, timeoutSeconds: 120)).Status());
        Assert.Equal(Adapter(dir.Path, straight), Adapter(dir.Path, killed));
    }

    [Fact]
    public async Task SIGTERM_checkpoints_the_running_job_exits_cleanly_and_the_job_resumes_on_the_next_start()
    {
        using var dir = new TempDir();
        string id;
        int step;
        using (var first = await DaemonProcess.StartAsync(dir.Path))
        {
            using var client = first.Client();
            var file = await client.UploadTrainingFileAsync();
            id = (await client.CreateJobAsync(file, new { n_epochs = 30, batch_size = 4 })).GetProperty("id").GetString()!; // no periodic checkpoints
            await client.WaitForJobAsync(id, j => j.Step() >= 3);
            Assert.Equal(0, await first.TerminateAsync(TimeSpan.FromSeconds(30)));
        }

        using var second = await DaemonProcess.StartAsync(dir.Path);
        using var again = second.Client();
        var messages = await again.EventMessagesAsync(id);
        var drained = messages.Single(m => m.StartsWith("gpud is stopping: the job was checkpointed at step", StringComparison.Ordinal));
        step = int.Parse(drained.Split(' ')[9], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(step, 3, 149);
        Assert.Equal("succeeded", (await again.WaitForJobAsync(id, timeoutSeconds: 120)).Status());
        Assert.Contains($"Resuming from the checkpoint at step {step}", await again.EventMessagesAsync(id));
    }

    private static byte[] Adapter(string dataDir, string jobId) =>
        File.ReadAllBytes(Path.Combine(dataDir, "adapters", jobId, "adapter_model.safetensors"));
}
