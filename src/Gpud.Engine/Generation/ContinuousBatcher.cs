using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Generation;

/// <summary>
/// Continuous batching over one resident model, as vLLM schedules it at the granularity of a decode step: requests
/// join with <see cref="Admit(IReadOnlyList{SequenceGroup})"/> (their prompts are prefilled together into free rows at
/// once), every <see cref="Step"/> decodes one token for every running sequence, and a sequence leaves the moment it
/// finishes, freeing its row for the next request. Rows of one step may use different adapters from an <see cref="AdapterPool"/>. Not thread-safe: one thread
/// (the device's serving loop) owns it; every call runs in its own dispose scope, so live tensors stay flat.
/// </summary>
public sealed class ContinuousBatcher : IDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly AdapterPool? _adapters;
    private readonly SlotKvCache _cache;
    private readonly List<Sequence> _rows = []; // row i of the cache belongs to _rows[i]

    public ContinuousBatcher(CausalLanguageModel model, int maxSequences, int contextLength, AdapterPool? adapters = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequences, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 2);
        _model = model;
        _adapters = adapters;
        _cache = new SlotKvCache(model.Config, maxSequences, contextLength, model.DType, model.Device);
    }

    public int MaxSequences => _cache.Rows;

    /// <summary>Tokens a sequence may hold, prompt plus generated.</summary>
    public int ContextLength => _cache.Capacity;

    public int Running => _rows.Count;

    public int FreeRows => MaxSequences - _rows.Count;

    /// <summary>Positions in use over all rows (the KV-cache usage numerator).</summary>
    public long CachedTokens => _rows.Sum(r => (long)r.Length);

    public long CacheBytes => _cache.Bytes;

    /// <summary>Running sequences that use a pool slot (a slot in use must not be reloaded).</summary>
    public bool UsesSlot(int slot) => _rows.Any(r => r.Group.AdapterSlot == slot);

    /// <summary>
    /// Prefills the group's prompt into free rows and chooses every choice's first token. Throws (and admits nothing)
    /// when the rows or the context do not suffice.
    /// </summary>
    public void Admit(SequenceGroup group) => Admit([group]);

    /// <summary>
    /// Prefills several groups' prompts in one forward pass (rows right-padded to the longest prompt: under the causal
    /// triangle no prompt token sees the padding, and decoding never reads past a row's length) and chooses every
    /// choice's first token. One forward instead of one per request is what keeps a burst of arrivals from costing a
    /// step each. Throws (and admits nothing) when the rows or the context do not suffice.
    /// </summary>
    public void Admit(IReadOnlyList<SequenceGroup> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count == 0) return;
        foreach (var group in groups)
        {
            if (group.Choices.Count == 0) throw new ArgumentException("A group needs at least one choice.", nameof(groups));
            if (group.Prompt.Count == 0 || group.Prompt.Count >= ContextLength)
                throw new ArgumentException($"The prompt needs 1..{ContextLength - 1} tokens, it has {group.Prompt.Count}.", nameof(groups));
        }
        var needed = groups.Sum(g => g.Choices.Count);
        if (needed > FreeRows) throw new InvalidOperationException($"{needed} rows needed, {FreeRows} free.");

        // Rows first..first+G-1 take each group's first choice (the prefilled rows); further choices follow and copy
        // their group's cache.
        var first = _rows.Count;
        var sequences = new List<Sequence>(needed);
        var groupOf = new List<long>(needed); // each sequence's group: the prefilled row its logits and cache come from
        for (var g = 0; g < groups.Count; g++)
        {
            sequences.Add(new Sequence(groups[g], 0, groups[g].Choices[0], groups[g].Prompt.Count));
            groupOf.Add(g);
        }
        for (var g = 0; g < groups.Count; g++)
        {
            for (var c = 1; c < groups[g].Choices.Count; c++)
            {
                sequences.Add(new Sequence(groups[g], c, groups[g].Choices[c], groups[g].Prompt.Count));
                groupOf.Add(g);
            }
        }
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var width = groups.Max(g => g.Prompt.Count);
            var ids = new long[groups.Count, width];
            for (var g = 0; g < groups.Count; g++)
                for (var t = 0; t < groups[g].Prompt.Count; t++) ids[g, t] = groups[g].Prompt[t];
            var positions = arange(width, ScalarType.Int64, _model.Device).unsqueeze(0).expand(groups.Count, width);
            var caches = _cache.ForPrefill(first, groups.Count);
            Tensor hidden;
            var slots = groups.Select(g => g.AdapterSlot).ToList();
            using (var adapters = slots.All(s => s == 0) ? null : _adapters!.Select(slots))
            {
                hidden = _model.Hidden(tensor(ids, device: _model.Device), positions, null, caches, adapters);
            }
            for (var g = 0; g < groups.Count; g++)
            {
                if (groups[g].PromptLogprobs is { } k) groups[g].Sink.OnPromptLogprobs(PromptLogprobs(hidden[g], groups[g].Prompt, k));
            }
            for (var i = groups.Count; i < sequences.Count; i++) _cache.CopyRow(first + (int)groupOf[i], first + i, sequences[i].Length);
            var lastPositions = tensor(groups.Select(g => (long)g.Prompt.Count - 1).ToArray(), device: _model.Device);
            var last = hidden[arange(groups.Count, ScalarType.Int64, _model.Device), lastPositions]; // [G, hidden]
            var logits = _model.Logits(last).index_select(0, tensor(groupOf.ToArray(), device: _model.Device));
            var (tokens, logprobs) = TokenSampler.Choose(logits, sequences);
            _rows.AddRange(sequences);
            Deliver(sequences, tokens, logprobs);
        }
        catch
        {
            foreach (var s in sequences) s.Dispose();
            _rows.RemoveAll(r => sequences.Contains(r));
            throw;
        }
        RemoveFinished();
    }

    /// <summary>Decodes one token for every running sequence; sequences whose caller cancelled leave first.</summary>
    public void Step()
    {
        LeaveCancelled();
        if (_rows.Count == 0) return;
        Forward([], 1);
        RemoveFinished();
    }

    /// <summary>
    /// Admits <paramref name="joining"/> and decodes one token for every running sequence in the same forward pass, as
    /// vLLM mixes prefills into decode batches: each row's new tokens (a running row's next token, a joining prompt) are
    /// right-padded to the longest and written to the cache from the row's own length. On a GPU a forward costs about
    /// the same for a few hundred tokens as for one per row (the host's kernel launches dominate), so a request that
    /// joins no longer costs every running stream a forward of its own. Returns false, having changed nothing, when the
    /// groups cannot join this way (more than one choice, prompt logprobs, no rows, more than
    /// <paramref name="maxTokens"/> padded tokens, or a running row without room for the padding); then
    /// <see cref="Admit(IReadOnlyList{SequenceGroup})"/> and <see cref="Step"/> them apart.
    /// </summary>
    public bool TryStep(IReadOnlyList<SequenceGroup> joining, long maxTokens)
    {
        ArgumentNullException.ThrowIfNull(joining);
        if (_rows.Count == 0 || joining.Count == 0 || joining.Count > FreeRows) return false;
        if (joining.Any(g => g.Choices.Count != 1 || g.PromptLogprobs is not null || g.Prompt.Count == 0 || g.Prompt.Count >= ContextLength)) return false;
        var width = joining.Max(g => g.Prompt.Count);
        if ((long)(_rows.Count + joining.Count) * width > maxTokens || _rows.Any(r => r.Length + width > ContextLength)) return false;

        LeaveCancelled();
        var joined = joining.Select(g => new Sequence(g, 0, g.Choices[0], g.Prompt.Count)).ToList();
        try
        {
            Forward(joined, width);
        }
        catch
        {
            foreach (var s in joined) s.Dispose();
            _rows.RemoveAll(joined.Contains);
            throw;
        }
        RemoveFinished();
        return true;
    }

    private void LeaveCancelled()
    {
        foreach (var sequence in _rows.Where(r => r.Group.CancellationToken.IsCancellationRequested)) Finish(sequence, FinishReason.Cancelled);
        RemoveFinished();
    }

    /// <summary>One forward over the running rows (their next token) and <paramref name="joined"/> (their prompts), then a token for each.</summary>
    private void Forward(List<Sequence> joined, int width)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var running = _rows.Count;
        var n = running + joined.Count;
        var ids = new long[n * width];
        var starts = new long[n]; // where each row's new tokens go in the cache
        var last = new long[n]; // the position whose hidden state predicts each row's next token
        for (var b = 0; b < running; b++) (ids[b * width], starts[b]) = (_rows[b].Next, _rows[b].Length);
        for (var g = 0; g < joined.Count; g++)
        {
            var prompt = joined[g].Group.Prompt;
            for (var t = 0; t < prompt.Count; t++) ids[(running + g) * width + t] = prompt[t];
            last[running + g] = prompt.Count - 1;
        }
        var device = _model.Device;
        var positions = tensor(starts, device: device).unsqueeze(1) + arange(width, ScalarType.Int64, device); // [n, width]
        var keyLength = starts.Max() + width;
        // Row b's query at position p sees that row's positions 0..p and nothing beyond (padding included).
        var mask = arange(keyLength, ScalarType.Int64, device).view(1, 1, 1, keyLength) <= positions.view(n, 1, width, 1);
        var caches = _cache.ForStep(n, positions, keyLength);
        var sequences = _rows.Concat(joined).ToList();
        Tensor hidden;
        using (var adapters = _adapters?.Select(sequences.Select(r => r.Group.AdapterSlot).ToList()))
        {
            hidden = _model.Hidden(tensor(ids, device: device).view(n, width), positions, mask, caches, adapters);
        }
        var predicting = width == 1 ? hidden.squeeze(1) : hidden[arange(n, ScalarType.Int64, device), tensor(last, device: device)];
        var logits = _model.Logits(predicting);
        foreach (var sequence in _rows) sequence.Length++;
        _rows.AddRange(joined);
        var (tokens, logprobs) = TokenSampler.Choose(logits, sequences);
        Deliver(sequences, tokens, logprobs);
    }

    /// <summary>Ends every running sequence without reporting (after a device failure the caller reports it).</summary>
    public IReadOnlyList<SequenceGroup> Clear()
    {
        var groups = _rows.Select(r => r.Group).Distinct().ToList();
        foreach (var sequence in _rows) sequence.Dispose();
        _rows.Clear();
        return groups;
    }

    public void Dispose()
    {
        Clear();
        _cache.Dispose();
    }

    /// <param name="hidden">One row's final hidden states [width ≥ prompt length, hidden].</param>
    private TokenLogprob?[] PromptLogprobs(Tensor hidden, IReadOnlyList<int> prompt, int k)
    {
        var result = new TokenLogprob?[prompt.Count];
        if (prompt.Count < 2) return result;
        var logSoftmax = _model.Logits(hidden[..(prompt.Count - 1)]).log_softmax(-1); // [len - 1, vocab]: predictions of tokens 1..len-1
        var next = tensor(prompt.Skip(1).Select(t => (long)t).ToArray(), device: _model.Device).unsqueeze(1);
        var actual = logSoftmax.gather(1, next).squeeze(1).to(CPU).data<float>().ToArray();
        var (values, indices) = k > 0 ? TokenSampler.Top(logSoftmax, k) : ([], []);
        for (var i = 1; i < prompt.Count; i++)
        {
            var top = new List<(int, float)>(k);
            for (var j = 0; j < k; j++) top.Add(((int)indices[(i - 1) * k + j], values[(i - 1) * k + j]));
            result[i] = new TokenLogprob(prompt[i], actual[i - 1], top);
        }
        return result;
    }

    private void Deliver(IReadOnlyList<Sequence> sequences, long[] tokens, TokenLogprob?[] logprobs)
    {
        for (var i = 0; i < sequences.Count; i++)
        {
            var sequence = sequences[i];
            var token = (int)tokens[i];
            if (sequence.Parameters.StopTokenIds?.Contains(token) == true)
            {
                Finish(sequence, FinishReason.Stop); // the stop token is not part of the output
                continue;
            }
            sequence.Generated.Add(token);
            sequence.Next = token;
            sequence.Constraint?.Advance(token);
            // A constrained sequence ends where its constraint is complete (a closed JSON object), not at a stop token.
            if (!sequence.Group.Sink.OnToken(sequence.Choice, token, logprobs[i]) || sequence.Constraint is { IsComplete: true }) Finish(sequence, FinishReason.Stop);
            else if (sequence.Generated.Count >= sequence.Parameters.MaxTokens || sequence.Length >= ContextLength) Finish(sequence, FinishReason.Length);
        }
    }

    private static void Finish(Sequence sequence, FinishReason reason)
    {
        if (sequence.Finished) return;
        sequence.Finished = true;
        sequence.Group.Sink.OnFinished(sequence.Choice, reason);
    }

    /// <summary>Removes finished rows, moving the last row into each gap so running rows stay 0..n-1.</summary>
    private void RemoveFinished()
    {
        for (var i = _rows.Count - 1; i >= 0; i--)
        {
            if (!_rows[i].Finished) continue;
            _rows[i].Dispose();
            var last = _rows.Count - 1;
            if (i != last)
            {
                _cache.CopyRow(last, i, _rows[last].Length);
                _rows[i] = _rows[last];
            }
            _rows.RemoveAt(last);
        }
    }

    private sealed class Sequence(SequenceGroup group, int choice, SamplingParameters parameters, int length) : ISampledRow, IDisposable
    {
        public SequenceGroup Group { get; } = group;
        public int Choice { get; } = choice;
        public SamplingParameters Parameters { get; } = parameters;
        public torch.Generator? Rng { get; } = parameters.Temperature > 0 ? new torch.Generator(0, CPU).manual_seed(parameters.Seed ?? Random.Shared.NextInt64()) : null;
        public List<int> Generated { get; } = [];
        IReadOnlyList<int> ISampledRow.Generated => Generated;
        public Constraints.ITokenConstraint? Constraint { get; } = parameters.Constraint?.Invoke();

        /// <summary>Positions in the cache; the token at position Length is <see cref="Next"/>, not yet fed.</summary>
        public int Length { get; set; } = length;
        public int Next { get; set; }
        public bool Finished { get; set; }

        public void Dispose() => Rng?.Dispose();
    }
}
