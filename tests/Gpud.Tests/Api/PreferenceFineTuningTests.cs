using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>OpenAI's DPO fine-tuning (<c>method.type: "dpo"</c>) over the jobs API.</summary>
public sealed class PreferenceFineTuningTests
{
    [Fact]
    public async Task A_dpo_job_trains_on_preference_pairs_reports_rewards_and_serves_its_model()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var upload = await (await client.PostAsync("/v1/files", Requests.UploadForm(Jobs.CapitalPreferencesJsonl()))).Json();
        Assert.Equal("processed", upload.GetProperty("status").GetString());

        var created = await client.CreateJobAsync(upload.GetProperty("id").GetString()!,
            new { beta = 0.2, n_epochs = 3, batch_size = 4, learning_rate_multiplier = 10 }, method: "dpo", suffix: "prefs");
        var id = created.GetProperty("id").GetString()!;
        Assert.Equal("dpo", created.GetProperty("method").GetProperty("type").GetString());
        Assert.False(created.GetProperty("method").TryGetProperty("supervised", out _));

        var job = await client.WaitForJobAsync(id, timeoutSeconds: 120);
        Assert.Equal("succeeded", job.Status());
        var h = job.GetProperty("method").GetProperty("dpo").GetProperty("hyperparameters");
        Assert.Equal(0.2, h.GetProperty("beta").GetDouble());
        Assert.Equal(0.005, h.GetProperty("learning_rate").GetDouble(), 12); // gpud-tiny's 5e-3 x DPO's 0.1 x multiplier 10
        Assert.Equal(3, job.GetProperty("hyperparameters").GetProperty("n_epochs").GetInt32());

        var events = await client.AllEventsAsync(id);
        Assert.Contains(events, e => e.GetProperty("message").GetString()!.Contains("DPO with beta 0.2", StringComparison.Ordinal));
        var metrics = events.Where(e => e.GetProperty("type").GetString() == "metrics").Select(e => e.GetProperty("data")).ToList();
        Assert.Equal(15, metrics[^1].GetProperty("step").GetInt32()); // 3 epochs x 20 pairs / 4
        Assert.True(metrics[^1].GetProperty("train_loss").GetDouble() < Math.Log(2), metrics[^1].ToString());
        Assert.InRange(metrics[^1].GetProperty("train_reward_accuracy").GetDouble(), 0.75, 1);
        Assert.True(metrics[^1].GetProperty("train_reward_margin").GetDouble() > 0);
        var checkpoints = await (await client.GetAsync($"/v1/fine_tuning/jobs/{id}/checkpoints")).Json();
        Assert.Equal(3, checkpoints.GetProperty("data").GetArrayLength());

        var model = job.GetProperty("fine_tuned_model").GetString()!;
        var answer = await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model, messages = new[] { new { role = "user", content = Capitals.Question(0) } }, max_tokens = 4, temperature = 0,
        });
        Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Preference_data_under_the_wrong_method_and_malformed_pairs_are_named()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var preferences = await client.UploadTrainingFileAsync(Jobs.CapitalPreferencesJsonl());
        var chat = await client.UploadTrainingFileAsync();

        var supervisedOnPairs = (await client.CreateJobAsync(preferences)).GetProperty("id").GetString()!;
        var dpoOnChat = (await client.CreateJobAsync(chat, method: "dpo")).GetProperty("id").GetString()!;

        var first = (await client.WaitForJobAsync(supervisedOnPairs)).GetProperty("error");
        Assert.Equal(("invalid_training_file", "training_file"), (first.GetProperty("code").GetString(), first.GetProperty("param").GetString()));
        Assert.Contains("Line 1 is a preference example", first.GetProperty("message").GetString());
        var second = (await client.WaitForJobAsync(dpoOnChat)).GetProperty("error");
        Assert.Equal("invalid_training_file", second.GetProperty("code").GetString());
        Assert.Contains("Line 1 is not a preference example", second.GetProperty("message").GetString());

        var lines = Jobs.CapitalPreferencesJsonl(12).Split('\n');
        lines[4] = """{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"A"},{"role":"assistant","content":"B"}],"non_preferred_output":[{"role":"assistant","content":"C"}]}""";
        var broken = await (await client.PostAsync("/v1/files", Requests.UploadForm(string.Join('\n', lines)))).Json();
        Assert.Equal("error", broken.GetProperty("status").GetString());
        Assert.Equal("Line 5: invalid_preferred_output: 'preferred_output' must be a list of exactly one assistant message.",
            broken.GetProperty("status_details").GetString());
        lines[4] = JsonSerializer.Serialize(Capitals.Chat(4));
        var mixed = await (await client.PostAsync("/v1/files", Requests.UploadForm(string.Join('\n', lines)))).Json();
        Assert.StartsWith("Line 5: inconsistent_format:", mixed.GetProperty("status_details").GetString());
    }

    [Fact]
    public async Task Auto_beta_resolves_to_openais_default_and_dpo_learns_at_a_tenth_of_the_supervised_rate()
    {
        using var gpud = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Devices:0:Name"] = "cuda:7" }); // queues, never runs
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync(Jobs.CapitalPreferencesJsonl());

        var created = await client.CreateJobAsync(file, new { n_epochs = 2 }, method: "dpo");
        Assert.Equal("auto", created.GetProperty("method").GetProperty("dpo").GetProperty("hyperparameters").GetProperty("beta").GetString());

        var job = await client.WaitForJobAsync(created.GetProperty("id").GetString()!, j => j.Status() == "queued");
        var h = job.GetProperty("method").GetProperty("dpo").GetProperty("hyperparameters");
        Assert.Equal(0.1, h.GetProperty("beta").GetDouble());
        Assert.Equal(5e-4, h.GetProperty("learning_rate").GetDouble(), 12);
        var dataset = job.GetProperty("dataset");
        Assert.Equal((20, 40), (dataset.GetProperty("examples").GetInt32(), dataset.GetProperty("sequences").GetInt32())); // two answers per pair
        Assert.Equal(40, dataset.GetProperty("total_steps").GetInt32()); // 2 epochs x 20 pairs at the auto batch size of 1
    }
}
