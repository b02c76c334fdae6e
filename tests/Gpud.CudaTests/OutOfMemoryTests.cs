using System.Text.Json;

namespace Gpud.CudaTests;

/// <summary>
/// A job too large for the device fails with gpud's out-of-memory error, and the device trains the next job. In the
/// daemon, not in this process: libtorch's caching allocator keeps what a process once held, so an in-process OOM would
/// leave the device full for every later test that starts a daemon.
/// </summary>
public sealed class OutOfMemoryTests
{
    [Fact]
    public async Task A_job_that_runs_out_of_device_memory_fails_with_out_of_memory_and_the_next_job_trains()
    {
        Gpu.Require();
        // Llama 3.2 1B's layers (vocabulary cut to 32k) and one 120k-token example per micro-batch: its activations
        // (~12 GB a layer, 16 layers) exceed any single GPU, while the next job's short examples fit easily.
        var model = Directory.CreateTempSubdirectory("gpud-cuda-oom-").FullName;
        try
        {
            using (var make = System.Diagnostics.Process.Start(Daemon.Program("gpud-bench"),
                       ["make-model", "--out", model, "--layers", "16", "--vocab", "32000"])!)
            {
                await make.WaitForExitAsync(TestContext.Current.CancellationToken);
                Assert.Equal(0, make.ExitCode);
            }
            using var daemon = await Daemon.StartAsync(null, $"--Gpud:Models:big:Path={model}",
                "--Gpud:Training:MaxSequenceLength=131072");
            string Chat(string answer) => string.Concat(Enumerable.Range(0, 10).Select(i => JsonSerializer.Serialize(new
            {
                messages = new object[] { new { role = "user", content = $"Example {i}" }, new { role = "assistant", content = answer } },
            }) + "\n"));

            var huge = await daemon.UploadAsync(Chat(new string('x', 120_000)));
            var failing = await daemon.PostAsync("/v1/fine_tuning/jobs", new
            {
                model = "big", training_file = huge, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 1, batch_size = 1 } } },
            });
            var failed = await daemon.WaitForJobAsync(failing.GetProperty("id").GetString()!);
            var error = failed.GetProperty("error");
            Assert.True(failed.GetProperty("status").GetString() == "failed" && error.ValueKind == JsonValueKind.Object
                        && error.GetProperty("code").GetString() == "out_of_memory",
                $"the job with 120k-token examples: {failed}\n{daemon.Log}");
            Assert.Contains("batch_size", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Contains("gradient_checkpointing", error.GetProperty("message").GetString(), StringComparison.Ordinal);

            var small = await daemon.UploadAsync(Chat("short"));
            var next = await daemon.PostAsync("/v1/fine_tuning/jobs", new
            {
                model = "big", training_file = small, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 1, batch_size = 2 } } },
            });
            var succeeded = await daemon.WaitForJobAsync(next.GetProperty("id").GetString()!);
            Assert.True(succeeded.GetProperty("status").GetString() == "succeeded", $"the job after the out-of-memory one: {succeeded}\n{daemon.Log}");
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }
}
