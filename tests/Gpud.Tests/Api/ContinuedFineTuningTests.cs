using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>Fine-tuning a fine-tuned model (<c>model: "ft:…"</c>): OpenAI's way to train further, and to run DPO after SFT.</summary>
public sealed class ContinuedFineTuningTests
{
    private static async Task<List<string>> AnswersAsync(HttpClient client, string model)
    {
        var answers = new List<string>();
        for (var i = 0; i < Capitals.Answers.Count; i++)
        {
            var response = await client.PostAsJsonAsync("/v1/chat/completions", new
            {
                model, messages = new[] { new { role = "user", content = Capitals.Question(i) } }, max_tokens = 8, temperature = 0,
            });
            answers.Add((await response.Json()).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!);
        }
        return answers;
    }

    private static List<double> Losses(List<JsonElement> events) =>
        events.Where(e => e.GetProperty("type").GetString() == "metrics").Select(e => e.GetProperty("data").GetProperty("train_loss").GetDouble()).ToList();

    [Fact]
    public async Task A_fine_tuned_model_trains_further_from_its_adapter_and_then_takes_dpo()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var chat = await client.UploadTrainingFileAsync();

        // SFT, stopped early: the capitals are half learned.
        var first = await client.CreateJobAsync(chat, new { n_epochs = 12, batch_size = 4, lora_r = 8, lora_alpha = 16 }, suffix: "sft");
        var sft = await client.WaitForJobAsync(first.GetProperty("id").GetString()!, timeoutSeconds: 120);
        Assert.Equal("succeeded", sft.Status());
        var sftModel = sft.GetProperty("fine_tuned_model").GetString()!;
        var sftLosses = Losses(await client.AllEventsAsync(sft.GetProperty("id").GetString()!));

        // Continue it: the new job starts where the first ended, with the first adapter's shape.
        var second = await client.CreateJobAsync(chat, new { n_epochs = 1, batch_size = 4 }, method: "supervised", suffix: "more", model: sftModel);
        Assert.Equal(sftModel, second.GetProperty("model").GetString());
        var more = await client.WaitForJobAsync(second.GetProperty("id").GetString()!, timeoutSeconds: 120);
        Assert.Equal("succeeded", more.Status());
        var h = more.GetProperty("method").GetProperty("supervised").GetProperty("hyperparameters");
        Assert.Equal((8, 16.0), (h.GetProperty("lora_r").GetInt32(), h.GetProperty("lora_alpha").GetDouble()));
        var moreEvents = await client.AllEventsAsync(more.GetProperty("id").GetString()!);
        Assert.Contains(moreEvents, e => e.GetProperty("message").GetString() == $"Continuing {sftModel}: its rank-8 adapter on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj is the starting point");
        var moreLosses = Losses(moreEvents);
        Assert.True(moreLosses[0] < 0.5 * sftLosses[0] && moreLosses[0] < 2 * sftLosses[^1],
            $"the continued job started at loss {moreLosses[0]:F3}; the first started at {sftLosses[0]:F3} and ended at {sftLosses[^1]:F3}");
        Assert.StartsWith("ft:gpud-tiny:gpud:more:ftjob-", more.GetProperty("fine_tuned_model").GetString());

        // DPO on the SFT model: it starts from (and is anchored to) the SFT model's answers, nudged toward the right ones.
        var preferences = await client.UploadTrainingFileAsync(Jobs.CapitalPreferencesJsonl());
        var third = await client.CreateJobAsync(preferences, new { n_epochs = 2, batch_size = 4 }, method: "dpo", suffix: "dpo", model: sftModel);
        var dpo = await client.WaitForJobAsync(third.GetProperty("id").GetString()!, timeoutSeconds: 120);
        Assert.Equal("succeeded", dpo.Status());
        var dpoEvents = await client.AllEventsAsync(dpo.GetProperty("id").GetString()!);
        Assert.Equal(Math.Log(2), Losses(dpoEvents)[0], 6);
        var sftAnswers = await AnswersAsync(client, sftModel);
        var dpoAnswers = await AnswersAsync(client, dpo.GetProperty("fine_tuned_model").GetString()!);
        var report = $"SFT: {string.Join(", ", sftAnswers)}; DPO: {string.Join(", ", dpoAnswers)}";
        Assert.True(dpoAnswers.Where((a, i) => a == sftAnswers[i]).Count() >= 15, report); // not the base model's babble
        Assert.True(dpoAnswers.Where((a, i) => a == Capitals.Answers[i]).Count() >= sftAnswers.Where((a, i) => a == Capitals.Answers[i]).Count(), report);
    }

    [Fact]
    public async Task The_adapter_shape_of_a_continued_model_cannot_be_changed_and_unknown_models_are_404()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var chat = await client.UploadTrainingFileAsync();
        var first = await client.CreateJobAsync(chat, new { n_epochs = 1, batch_size = 10 });
        var model = (await client.WaitForJobAsync(first.GetProperty("id").GetString()!)).GetProperty("fine_tuned_model").GetString()!;

        var reshaped = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new
        {
            model, training_file = chat, method = new { type = "supervised", supervised = new { hyperparameters = new { lora_r = 4 } } },
        });
        await reshaped.AssertError(HttpStatusCode.BadRequest, "method.supervised.hyperparameters.lora_r");

        var unknown = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = model.Replace("ftjob-", "ftjob-x", StringComparison.Ordinal), training_file = chat });
        await unknown.AssertError(HttpStatusCode.NotFound, "model", "model_not_found");

        // Deleting the parent after the job was validated does not pull the adapter from under it.
        var child = await client.CreateJobAsync(chat, new { n_epochs = 1, batch_size = 10 }, model: model);
        var childId = child.GetProperty("id").GetString()!;
        await client.WaitForJobAsync(childId, j => j.Status() is "queued" or "running" or "succeeded");
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/models/{model}")).StatusCode);
        Assert.Equal("succeeded", (await client.WaitForJobAsync(childId)).Status());
    }
}
