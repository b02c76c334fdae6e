using System.Security.Claims;
using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Lists;
using Gpud.Services.FineTuning;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.FineTuning;

/// <summary>OpenAI's fine-tuning jobs API: <c>/v1/fine_tuning/jobs</c>.</summary>
internal static class FineTuningEndpoints
{
    public static RouteGroupBuilder MapFineTuning(this RouteGroupBuilder v1)
    {
        var jobs = v1.MapGroup("/fine_tuning/jobs").WithTags("Fine-tuning");
        jobs.MapPost("/", Create)
            .Accepts<CreateFineTuningJobRequest>("application/json")
            .WithName("createFineTuningJob")
            .WithSummary("Create a fine-tuning job: it validates its files, waits in the FIFO queue, then trains a LoRA adapter.");
        jobs.MapGet("/", List).WithName("listFineTuningJobs").WithSummary("List jobs, newest first (filter with metadata[key]=value).");
        jobs.MapGet("/{id}", Retrieve).WithName("retrieveFineTuningJob").WithSummary("Retrieve a job.");
        jobs.MapPost("/{id}/cancel", Cancel).WithName("cancelFineTuningJob").WithSummary("Cancel a job that has not finished.");
        jobs.MapPost("/{id}/pause", Pause).WithName("pauseFineTuningJob")
            .WithSummary("Pause a queued or running job; a running one checkpoints at the end of its current step.");
        jobs.MapPost("/{id}/resume", Resume).WithName("resumeFineTuningJob")
            .WithSummary("Resume a paused job: it goes to the tail of the queue and continues from its checkpoint.");
        jobs.MapGet("/{id}/events", Events).WithName("listFineTuningEvents").WithSummary("List a job's events, newest first.");
        jobs.MapGet("/{id}/checkpoints", Checkpoints).WithName("listFineTuningJobCheckpoints").WithSummary("List a job's checkpoints, newest first.");
        return v1;
    }

    private static Ok<FineTuningJobObject> Create(JsonElement body, ClaimsPrincipal user, FineTuningJobsService jobs) =>
        TypedResults.Ok(FineTuningJobObject.From(jobs.Create(user.Project(), body)));

    private static Results<Ok<FineTuningJobList>, JsonHttpResult<ErrorResponse>> List(
        HttpContext context, ClaimsPrincipal user, FineTuningJobsService jobs, string? after, string? limit)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var (data, hasMore) = jobs.List(user.Project(), take, string.IsNullOrEmpty(after) ? null : after, ListQuery.Metadata(context.Request.Query));
        return TypedResults.Ok(new FineTuningJobList("list", data.Select(FineTuningJobObject.From).ToList(), hasMore));
    }

    private static Ok<FineTuningJobObject> Retrieve(ClaimsPrincipal user, FineTuningJobsService jobs, string id) =>
        TypedResults.Ok(FineTuningJobObject.From(jobs.Get(user.Project(), id)));

    private static Ok<FineTuningJobObject> Cancel(ClaimsPrincipal user, FineTuningJobsService jobs, string id) =>
        TypedResults.Ok(FineTuningJobObject.From(jobs.Cancel(user.Project(), id)));

    private static Ok<FineTuningJobObject> Pause(ClaimsPrincipal user, FineTuningJobsService jobs, string id) =>
        TypedResults.Ok(FineTuningJobObject.From(jobs.Pause(user.Project(), id)));

    private static Ok<FineTuningJobObject> Resume(ClaimsPrincipal user, FineTuningJobsService jobs, string id) =>
        TypedResults.Ok(FineTuningJobObject.From(jobs.Resume(user.Project(), id)));

    private static Results<Ok<FineTuningJobEventList>, JsonHttpResult<ErrorResponse>> Events(
        ClaimsPrincipal user, FineTuningJobsService jobs, string id, string? after, string? limit)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var page = jobs.Events(user.Project(), id, take, string.IsNullOrEmpty(after) ? null : after);
        return TypedResults.Ok(new FineTuningJobEventList("list", page.Items.Select(FineTuningJobEventObject.From).ToList(), page.HasMore));
    }

    private static Results<Ok<FineTuningJobCheckpointList>, JsonHttpResult<ErrorResponse>> Checkpoints(
        ClaimsPrincipal user, FineTuningJobsService jobs, string id, string? after, string? limit)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var page = jobs.Checkpoints(user.Project(), id, take, string.IsNullOrEmpty(after) ? null : after);
        var data = page.Items.Select(FineTuningJobCheckpointObject.From).ToList();
        return TypedResults.Ok(new FineTuningJobCheckpointList("list", data, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id, page.HasMore));
    }
}
