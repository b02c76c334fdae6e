using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Gpud.Services.Ids;
using Gpud.Services.Models;
using Gpud.Storage.Batches;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Batches;

/// <summary>
/// Runs batches in creation order, one at a time, up to <see cref="BatchSettings.RequestsInFlight"/> of its requests at
/// once, each queued behind interactive traffic. Validation and the end of batches (their files, a cancel, an expiry)
/// run alongside, so neither waits for the running batch. A restart resumes a batch from its journal; nothing is kept
/// in memory that the database and the journal do not hold.
/// </summary>
public sealed partial class BatchRunner(
    BatchRepository batches,
    FilesService files,
    ModelCatalog models,
    IEnumerable<IBatchEndpoint> endpoints,
    BatchSettings settings,
    BatchMetrics metrics,
    TimeProvider time,
    ILogger<BatchRunner> logger) : BackgroundService
{
    private static readonly TimeSpan ReportInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan BusyRetry = TimeSpan.FromSeconds(1);

    private readonly Dictionary<string, IBatchEndpoint> _endpoints = endpoints.ToDictionary(e => e.Url, StringComparer.Ordinal);
    private readonly SemaphoreSlim _validate = new(0);
    private readonly SemaphoreSlim _run = new(0);
    private readonly SemaphoreSlim _finalize = new(0);
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);

    /// <summary>Signals new work (a created batch).</summary>
    public void Wake()
    {
        Signal(_validate);
        Signal(_run);
        Signal(_finalize);
    }

    private static void Signal(SemaphoreSlim signal)
    {
        if (signal.CurrentCount == 0) signal.Release();
    }

    /// <summary>Stops the batch's requests in flight (it has been marked <c>cancelling</c>); the runner then finalizes it.</summary>
    public void Stop(string batchId)
    {
        if (_running.TryGetValue(batchId, out var running))
        {
            try
            {
                running.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Its execution ended meanwhile.
            }
        }
        Wake();
    }

    public override void Dispose()
    {
        _validate.Dispose();
        _run.Dispose();
        _finalize.Dispose();
        base.Dispose();
    }

    /// <summary>
    /// Three loops over disjoint work, so none waits on another: validation; execution of one batch at a time; and
    /// the end of batches no execution holds (finished, cancelled, or expired — a waiting one expires on time too).
    /// </summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(Task.Run(() => ValidateLoop(stoppingToken), CancellationToken.None), Task.Run(() => ExecuteLoop(stoppingToken), CancellationToken.None),
            Task.Run(() => FinalizeLoop(stoppingToken), CancellationToken.None));

    private async Task ValidateLoop(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            foreach (var batch in batches.WithStatus(BatchStatus.Validating))
            {
                try
                {
                    Validate(batch);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogBatchFailed(logger, batch.Id, e);
                    Fail(batch, [new BatchInputError("server_error", $"The input file could not be read: {e.Message}", "input_file_id", null)]);
                }
            }
            try
            {
                await _validate.WaitAsync(TimeSpan.FromSeconds(30), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task ExecuteLoop(CancellationToken stoppingToken)
    {
        // Requests name models: none runs before the catalog has checked them at start-up, or a batch resumed after a
        // restart answers model_not_found for models about to be served.
        while (!models.Loaded)
        {
            try
            {
                await Task.Delay(100, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            var next = batches.WithStatus(BatchStatus.InProgress).FirstOrDefault(b => !Expired(b));
            try
            {
                if (next is null) await _run.WaitAsync(TimeSpan.FromSeconds(30), stoppingToken);
                else await Execute(next, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Broken(next, e);
            }
        }
    }

    private async Task FinalizeLoop(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var due = batches.WithStatus(BatchStatus.Cancelling, BatchStatus.Finalizing, BatchStatus.InProgress)
                .Where(b => !_running.ContainsKey(b.Id) && (b.Status != BatchStatus.InProgress || Expired(b)));
            foreach (var batch in due)
            {
                try
                {
                    await Finalize(batch, batch.Status switch
                    {
                        BatchStatus.Cancelling => BatchStatus.Cancelled,
                        BatchStatus.Finalizing => BatchStatus.Completed,
                        _ => BatchStatus.Expired,
                    }, stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    Broken(batch, e);
                }
            }
            try
            {
                await _finalize.WaitAsync(TimeSpan.FromSeconds(30), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>A batch the runner cannot take further would block every batch behind it: it fails, with the reason.</summary>
    private void Broken(BatchRecord? batch, Exception e)
    {
        LogBatchFailed(logger, batch?.Id ?? "?", e);
        if (batch is null) return;
        batches.Transition(batch.Id, [batch.Status], new BatchChanges(BatchStatus.Failed)
        {
            FailedAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Errors = ErrorsJson([new BatchInputError("server_error", $"The batch could not be run: {e.Message}", null, null)]),
        });
        metrics.Batches.WithLabels(BatchStatus.Failed).Inc();
    }

    private void Validate(BatchRecord batch)
    {
        BatchInput input;
        try
        {
            input = ReadInput(batch);
        }
        catch (GpudException e)
        {
            Fail(batch, [new BatchInputError("invalid_input_file", e.Message, "input_file_id", null)]);
            return;
        }
        if (input.Errors.Count > 0)
        {
            Fail(batch, input.Errors);
            return;
        }
        var started = batches.Transition(batch.Id, [BatchStatus.Validating], new BatchChanges(BatchStatus.InProgress)
        {
            InProgressAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Total = input.Requests.Count,
            Model = input.Model,
        });
        if (started is null) return; // cancelled meanwhile
        LogValidated(logger, batch.Id, input.Requests.Count);
        Signal(_run);
    }

    private void Fail(BatchRecord batch, IReadOnlyList<BatchInputError> errors)
    {
        var failed = batches.Transition(batch.Id, [BatchStatus.Validating], new BatchChanges(BatchStatus.Failed)
        {
            FailedAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Errors = ErrorsJson(errors),
        });
        if (failed is null) return;
        metrics.Batches.WithLabels(BatchStatus.Failed).Inc();
        LogInvalid(logger, batch.Id, errors.Count, errors[0].Message);
    }

    private BatchInput ReadInput(BatchRecord batch)
    {
        var (_, content) = files.OpenContent(batch.Project, batch.InputFileId);
        using (content) return BatchInput.Read(content, batch.Endpoint);
    }

    private bool Expired(BatchRecord batch) => time.GetUtcNow().ToUnixTimeSeconds() >= batch.ExpiresAt;

    /// <summary>Runs the requests the journal lacks, then hands the batch to finalization (unless gpud is stopping).</summary>
    private async Task Execute(BatchRecord batch, CancellationToken stoppingToken)
    {
        var endpoint = _endpoints[batch.Endpoint];
        var input = ReadInput(batch);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        _running[batch.Id] = cancel;
        var complete = false;
        try
        {
            // A cancel that landed before the batch was registered: the finalize loop ends it.
            if (batches.Get(batch.Id) is not { Status: BatchStatus.InProgress }) return;
            using var journal = BatchJournal.Open(settings.JournalPath(batch.Id));
            var progress = new Progress(batches, journal, batch.Id);
            if (journal.Totals() is { Completed: > 0 } or { Failed: > 0 }) LogResumed(logger, batch.Id, journal.Results.Count, input.Requests.Count);
            using var slots = new SemaphoreSlim(settings.RequestsInFlight);
            var inFlight = new List<Task>();
            foreach (var request in input.Requests)
            {
                if (journal.Has(request.Index)) continue;
                if (Expired(batch)) break;
                try
                {
                    await slots.WaitAsync(cancel.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                inFlight.Add(Answer(endpoint, batch, request, journal, progress, slots, cancel.Token));
            }
            await Task.WhenAll(inFlight);
            progress.Report(force: true);
            complete = input.Requests.All(r => journal.Has(r.Index));
        }
        finally
        {
            _running.TryRemove(batch.Id, out _);
        }
        if (stoppingToken.IsCancellationRequested) return; // resumed from the journal at the next start
        // Every request answered: finalizing. Cancelled or expired first: the finalize loop ends it as such.
        if (complete)
            batches.Transition(batch.Id, [BatchStatus.InProgress], new BatchChanges(BatchStatus.Finalizing) { FinalizingAt = time.GetUtcNow().ToUnixTimeSeconds() });
        Signal(_finalize);
    }

    /// <summary>Answers one request and journals the answer; a request stopped by cancel or shutdown leaves nothing.</summary>
    private async Task Answer(IBatchEndpoint endpoint, BatchRecord batch, BatchRequest request, BatchJournal journal, Progress progress,
        SemaphoreSlim slots, CancellationToken cancellationToken)
    {
        await Task.Yield();
        try
        {
            while (true)
            {
                BatchAnswer answer;
                try
                {
                    answer = await endpoint.AnswerAsync(batch.Project, request.Body, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    // Cancelled, or the model server is shutting down under it: not an answer; it runs again (or not at all).
                    return;
                }
                catch (Exception e)
                {
                    LogRequestFailed(logger, batch.Id, request.CustomId, e);
                    answer = new BatchAnswer(500, ErrorBody($"The request failed: {e.Message}", "server_error", null));
                }
                if (cancellationToken.IsCancellationRequested) return; // possibly cut short: it runs again or not at all
                if (answer.StatusCode == 429)
                {
                    // The model's queue is full of interactive requests: wait for room rather than fail the line.
                    try
                    {
                        await Task.Delay(BusyRetry, cancellationToken);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    continue;
                }
                var succeeded = answer.StatusCode == 200;
                journal.Append(new BatchResult(request.Index, succeeded, answer.InputTokens, answer.OutputTokens,
                    OutputLine(request.CustomId, answer.StatusCode, answer.Body, null)));
                metrics.Requests.WithLabels(batch.Endpoint, succeeded ? "succeeded" : "failed").Inc();
                progress.Report(force: false);
                return;
            }
        }
        finally
        {
            slots.Release();
        }
    }

    /// <summary>
    /// Writes the output file (answers with status 200) and the error file (the others; on expiry, a
    /// <c>batch_expired</c> line for each request that never ran), both in input order, then ends the batch. Each file
    /// is recorded as soon as it exists, so a finalization redone after a crash does not write it twice.
    /// </summary>
    private async Task Finalize(BatchRecord batch, string outcome, CancellationToken cancellationToken)
    {
        var path = settings.JournalPath(batch.Id);
        IReadOnlyList<BatchResult> results = [];
        if (File.Exists(path))
        {
            using var journal = BatchJournal.Open(path);
            results = journal.Results;
        }
        var errors = results.Where(r => !r.Succeeded).Select(r => (r.Index, r.Line)).ToList();
        if (outcome == BatchStatus.Expired && batch.Total > results.Count)
        {
            try
            {
                var done = results.Select(r => r.Index).ToHashSet();
                errors.AddRange(ReadInput(batch).Requests.Where(r => !done.Contains(r.Index)).Select(r => (r.Index, OutputLine(r.CustomId, null, null,
                    ("batch_expired", "This request could not be executed before the completion window expired.")))));
                errors.Sort((a, b) => a.Index.CompareTo(b.Index));
            }
            catch (GpudException e)
            {
                LogExpiredInputGone(logger, batch.Id, e.Message);
            }
        }
        var succeeded = results.Where(r => r.Succeeded).Select(r => r.Line).ToList();
        if (batch.OutputFileId is null && succeeded.Count > 0)
        {
            var file = await files.CreateGeneratedAsync(batch.Project, $"{batch.Id}_output.jsonl", FilePurposes.BatchOutput, Jsonl(succeeded),
                cancellationToken, batch.OutputExpiresAfter);
            batches.SetFile(batch.Id, "output_file_id", file.Id);
        }
        if (batch.ErrorFileId is null && errors.Count > 0)
        {
            var file = await files.CreateGeneratedAsync(batch.Project, $"{batch.Id}_error.jsonl", FilePurposes.BatchOutput,
                Jsonl(errors.Select(e => e.Line)), cancellationToken, batch.OutputExpiresAfter);
            batches.SetFile(batch.Id, "error_file_id", file.Id);
        }
        batches.SetProgress(batch.Id, succeeded.Count, errors.Count, results.Sum(r => (long)r.InputTokens), results.Sum(r => (long)r.OutputTokens));
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var changes = outcome switch
        {
            BatchStatus.Completed => new BatchChanges(outcome) { CompletedAt = now },
            BatchStatus.Cancelled => new BatchChanges(outcome) { CancelledAt = now },
            _ => new BatchChanges(outcome) { ExpiredAt = now },
        };
        if (batches.Transition(batch.Id, [batch.Status], changes) is null) return; // changed meanwhile (a cancel): the loop goes on from there
        metrics.Batches.WithLabels(outcome).Inc();
        LogEnded(logger, batch.Id, outcome, succeeded.Count, errors.Count);
        try
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    private static byte[] Jsonl(IEnumerable<string> lines)
    {
        var text = new StringBuilder();
        foreach (var line in lines) text.Append(line).Append('\n');
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>
    /// A line of the output or error file: <c>{"id", "custom_id", "response": {"status_code", "request_id", "body"},
    /// "error"}</c>, <c>response</c> null when the request never ran (then <c>error</c> says why).
    /// </summary>
    private static string OutputLine(string customId, int? status, string? body, (string Code, string Message)? error)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            writer.WriteString("id", ResourceId.New("batch_req_"));
            writer.WriteString("custom_id", customId);
            if (status is { } code)
            {
                writer.WriteStartObject("response");
                writer.WriteNumber("status_code", code);
                writer.WriteString("request_id", ResourceId.New("req_"));
                writer.WritePropertyName("body");
                writer.WriteRawValue(body!);
                writer.WriteEndObject();
            }
            else
            {
                writer.WriteNull("response");
            }
            if (error is { } e)
            {
                writer.WriteStartObject("error");
                writer.WriteString("code", e.Code);
                writer.WriteString("message", e.Message);
                writer.WriteEndObject();
            }
            else
            {
                writer.WriteNull("error");
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string ErrorBody(string message, string type, string? code) =>
        JsonSerializer.Serialize(new Dictionary<string, object?> { ["error"] = new Dictionary<string, object?> { ["message"] = message, ["type"] = type, ["param"] = null, ["code"] = code } });

    private static string ErrorsJson(IReadOnlyList<BatchInputError> errors) =>
        JsonSerializer.Serialize(errors.Select(e => new Dictionary<string, object?> { ["code"] = e.Code, ["message"] = e.Message, ["param"] = e.Param, ["line"] = e.Line }));

    /// <summary>Writes the counts to the database at most once a second (and forces the journal to disk with them).</summary>
    private sealed class Progress(BatchRepository batches, BatchJournal journal, string batchId)
    {
        private readonly Lock _gate = new();
        private long _last = Stopwatch.GetTimestamp();

        public void Report(bool force)
        {
            lock (_gate)
            {
                if (!force && Stopwatch.GetElapsedTime(_last) < ReportInterval) return;
                _last = Stopwatch.GetTimestamp();
                journal.Sync();
                var (completed, failed, input, output) = journal.Totals();
                batches.SetProgress(batchId, completed, failed, input, output);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} validated: {Requests} requests")]
    private static partial void LogValidated(ILogger logger, string batchId, int requests);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batch {BatchId} failed validation: {Errors} problem(s) in its input file, the first: {First}")]
    private static partial void LogInvalid(ILogger logger, string batchId, int errors, string first);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} resumed: {Done} of {Total} requests already answered")]
    private static partial void LogResumed(ILogger logger, string batchId, int done, int total);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batch {BatchId}: request {CustomId} failed")]
    private static partial void LogRequestFailed(ILogger logger, string batchId, string customId, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} {Status}: {Succeeded} answers in its output file, {Failed} in its error file")]
    private static partial void LogEnded(ILogger logger, string batchId, string status, int succeeded, int failed);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batch {BatchId} expired and its input file is gone ({Reason}): the requests that never ran are not listed")]
    private static partial void LogExpiredInputGone(ILogger logger, string batchId, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Batch {BatchId} could not be run and is marked failed")]
    private static partial void LogBatchFailed(ILogger logger, string batchId, Exception exception);
}
