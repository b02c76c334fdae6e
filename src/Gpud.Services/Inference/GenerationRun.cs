using System.Diagnostics;
using System.Threading.Channels;
using Gpud.Engine.Generation;
using Gpud.Engine.Tokenization;

namespace Gpud.Services.Inference;

/// <summary>One prompt of a request as the serving loop takes it: its tokens and one sampling setup per choice.</summary>
/// <param name="Stops">OpenAI stop strings: the text ends before the first one, which is never included.</param>
/// <param name="PromptLogprobs">For echo with logprobs: alternatives per prompt token; null for none.</param>
public sealed record GenerationInput(IReadOnlyList<int> Prompt, IReadOnlyList<SamplingParameters> Choices, IReadOnlyList<string> Stops, int? PromptLogprobs = null);

public enum GenerationEventKind
{
    /// <summary>The prompt's token logprobs (echo).</summary>
    PromptScored,

    /// <summary>A generated token and the text it releases (possibly empty: held back for a stop string or a partial character).</summary>
    Token,

    /// <summary>A choice ended; <see cref="GenerationEvent.Text"/> is the last held-back text.</summary>
    Finished,
}

/// <summary>Something that happened to one choice of one prompt (<see cref="Prompt"/> indexes the request's prompts).</summary>
public sealed record GenerationEvent(
    GenerationEventKind Kind, int Prompt, int Choice, string Text = "", int TokenId = -1, TokenLogprob? Logprob = null,
    FinishReason Reason = FinishReason.Stop, IReadOnlyList<TokenLogprob?>? PromptLogprobs = null);

/// <summary>
/// A request in flight: its prompts' sequence groups and one channel of <see cref="GenerationEvent"/>s the endpoint
/// reads, whether it streams or waits for the end. Sinks run on the serving thread and only decode text and write to
/// the channel (unbounded: a slow client never stalls the batch; its tokens are already computed).
/// </summary>
public sealed class GenerationRun
{
    private readonly Channel<GenerationEvent> _events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly InferenceMetrics _metrics;
    private readonly string _label;

    // The model's labelled series, looked up once per request rather than once per token (the sinks run on the batch's thread).
    private readonly Prometheus.Counter.Child _generated;
    private readonly Prometheus.Histogram.Child _firstTokenSeconds;
    private readonly Prometheus.Histogram.Child _interTokenSeconds;
    private readonly long _started = Stopwatch.GetTimestamp();
    private int _open;
    private int _firstToken;

    internal GenerationRun(string modelLabel, IReadOnlyList<GenerationInput> inputs, TextTokenizer tokenizer, InferenceMetrics metrics, CancellationToken cancellationToken,
        bool batchPriority = false)
    {
        BatchPriority = batchPriority;
        _metrics = metrics;
        _label = modelLabel;
        _generated = metrics.GenerationTokens.WithLabels(modelLabel);
        _firstTokenSeconds = metrics.TimeToFirstToken.WithLabels(modelLabel);
        _interTokenSeconds = metrics.InterTokenLatency.WithLabels(modelLabel);
        _open = inputs.Sum(i => i.Choices.Count);
        Inputs = inputs;
        CancellationToken = cancellationToken;
        Sinks = inputs.Select((input, i) => new PromptSink(this, i, input, tokenizer)).ToList();
    }

    /// <summary>A Batch API request: it waits behind every interactive request for a free row.</summary>
    public bool BatchPriority { get; }

    public IReadOnlyList<GenerationInput> Inputs { get; }

    public ChannelReader<GenerationEvent> Events => _events.Reader;

    public CancellationToken CancellationToken { get; }

    internal IReadOnlyList<PromptSink> Sinks { get; }

    /// <summary>Ends the run with an error the reader sees (device failure, adapter that cannot load).</summary>
    internal void Fail(Exception error) => _events.Writer.TryComplete(error);

    private void Write(GenerationEvent e) => _events.Writer.TryWrite(e);

    private void ChoiceDone(FinishReason reason)
    {
        if (reason != FinishReason.Cancelled) _metrics.Requests.WithLabels(_label, reason == FinishReason.Length ? "length" : "stop").Inc();
        if (Interlocked.Decrement(ref _open) != 0) return;
        _metrics.RequestDuration.WithLabels(_label).Observe(Stopwatch.GetElapsedTime(_started).TotalSeconds);
        _events.Writer.TryComplete();
    }

    internal sealed class PromptSink(GenerationRun run, int prompt, GenerationInput input, TextTokenizer tokenizer) : ISequenceSink
    {
        private readonly TextStream[] _texts = input.Choices.Select(_ => new TextStream(tokenizer, input.Stops)).ToArray();
        private readonly long[] _lastToken = new long[input.Choices.Count];

        public GenerationRun Owner => run;

        public void OnPromptLogprobs(IReadOnlyList<TokenLogprob?> logprobs) =>
            run.Write(new GenerationEvent(GenerationEventKind.PromptScored, prompt, 0, PromptLogprobs: logprobs));

        public bool OnToken(int choice, int tokenId, TokenLogprob? logprob)
        {
            var now = Stopwatch.GetTimestamp();
            if (Interlocked.Exchange(ref run._firstToken, 1) == 0)
                run._firstTokenSeconds.Observe(Stopwatch.GetElapsedTime(run._started, now).TotalSeconds);
            else if (_lastToken[choice] != 0)
                run._interTokenSeconds.Observe(Stopwatch.GetElapsedTime(_lastToken[choice], now).TotalSeconds);
            _lastToken[choice] = now;
            run._generated.Inc();
            var text = _texts[choice].Add(tokenId);
            run.Write(new GenerationEvent(GenerationEventKind.Token, prompt, choice, text, tokenId, logprob));
            return !_texts[choice].Stopped;
        }

        public void OnFinished(int choice, FinishReason reason)
        {
            var rest = reason == FinishReason.Cancelled ? "" : _texts[choice].Finish();
            if (reason == FinishReason.Length && _texts[choice].Stopped) reason = FinishReason.Stop; // the flush completed a stop string
            run.Write(new GenerationEvent(GenerationEventKind.Finished, prompt, choice, rest, Reason: reason));
            run.ChoiceDone(reason);
        }
    }
}
