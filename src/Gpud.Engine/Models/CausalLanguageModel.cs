using Gpud.Engine.Lora;
using Gpud.Engine.Models.Layers;
using Gpud.Engine.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Models;

/// <summary>
/// A Llama-family causal LM (Llama 2/3, Mistral, Qwen2, Qwen3) built straight from a Hugging Face checkpoint. Submodules carry
/// the Hugging Face names, so <c>state_dict()</c> keys are <c>model.layers.0.self_attn.q_proj.weight</c> and PEFT
/// adapters map onto it by name. Every base parameter is frozen.
/// </summary>
public sealed class CausalLanguageModel : nn.Module
{
    private readonly RotaryEmbedding _rotary;
    private readonly LmHead? _lmHead; // null when tied to the embeddings

    private CausalLanguageModel(ModelConfig config, WeightLoader weights) : base("CausalLanguageModel")
    {
        Config = config;
        Device = weights.Device;
        DType = weights.DType;
        Body = new DecoderStack(config, weights);
        register_module("model", Body);
        if (config.TieWordEmbeddings || !weights.Has("lm_head.weight"))
        {
            if (!config.TieWordEmbeddings)
                throw new ModelLoadException("The checkpoint has no 'lm_head.weight' and the config does not tie word embeddings.");
        }
        else
        {
            _lmHead = new LmHead(weights.Parameter("lm_head.weight", config.VocabSize, config.HiddenSize));
            register_module("lm_head", _lmHead);
        }
        _rotary = new RotaryEmbedding(config, Device);
    }

    public ModelConfig Config { get; }

    public Device Device { get; }

    public ScalarType DType { get; }

    public DecoderStack Body { get; }

    /// <summary>Loads a model directory (config.json + safetensors) onto <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public static CausalLanguageModel Load(string directory, Device device, ScalarType dtype)
    {
        var config = ModelConfig.Load(directory);
        using var checkpoint = Checkpoint.Open(directory);
        return Load(config, checkpoint, device, dtype);
    }

    public static CausalLanguageModel Load(ModelConfig config, IWeightSource weights, Device device, ScalarType dtype)
    {
        using var _ = no_grad();
        return new CausalLanguageModel(config, new WeightLoader(weights, device, dtype));
    }

    /// <summary>Final hidden states [batch, seq, hidden].</summary>
    /// <param name="inputIds">[batch, seq] int64 token ids.</param>
    /// <param name="positionIds">[batch, seq] int64 positions (restarting per packed example, offset by the cache).</param>
    /// <param name="mask">null for plain causal attention, else a boolean [batch, 1, seq, keys] mask in which key index k
    /// holds position k (a sliding window is applied to it from <paramref name="positionIds"/>).</param>
    /// <param name="cache">One <see cref="IKvCache"/> per layer, or null.</param>
    /// <param name="adapters">Per-row LoRA adapters from an <see cref="AdapterPool"/>, or null for the base (and any attached adapter).</param>
    /// <param name="segments">For packed rows (no mask, no cache): the sequences each row holds, attended to one by one.</param>
    public Tensor Hidden(Tensor inputIds, Tensor positionIds, Tensor? mask = null, IReadOnlyList<IKvCache>? cache = null, BatchLora? adapters = null,
        PackedSegments? segments = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        using var scope = NewDisposeScope();
        var hidden = Body.Embed(inputIds);
        var angles = _rotary.Angles(positionIds, hidden.dtype);
        var seq = inputIds.size(1);
        var past = cache is { Count: > 0 } ? cache[0].Length : 0;
        mask = mask is null
            ? PlainMask(seq, past, segments, hidden.dtype)
            : Additive(Config.SlidingWindow is { } w && mask.size(-1) > w ? CausalMask.Window(mask, positionIds, w) : mask, hidden.dtype);
        for (var i = 0; i < Body.Layers.Count; i++)
            hidden = Body.Layers[i].Forward(hidden, angles, mask, cache?[i], adapters, segments);
        return Body.Norm.forward(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The additive mask for plain causal attention over <paramref name="seq"/> new positions after <paramref name="past"/>
    /// cached ones, or null where SDPA's <c>is_causal</c> says it: spelled out for a chunk appended to a cache (is_causal
    /// would align the triangle top-left) and for more positions than the sliding window. Packed rows attend sequence by
    /// sequence instead (<see cref="PackedSegments"/>).
    /// </summary>
    private Tensor? PlainMask(long seq, long past, PackedSegments? segments, ScalarType dtype)
    {
        if (segments is not null || !(past > 0 && seq > 1 || CausalMask.Windowed(Config.SlidingWindow, past + seq))) return null;
        using var causal = CausalMask.Causal(seq, past + seq, past, Config.SlidingWindow, Device);
        using var view = causal.view(1, 1, seq, past + seq);
        return Additive(view, dtype);
    }

    /// <summary>SDPA turns a boolean mask into an additive one (0 / −∞) on every call: once per forward here, not per layer.</summary>
    private Tensor? Additive(Tensor? mask, ScalarType dtype)
    {
        if (mask is not { dtype: ScalarType.Bool }) return mask;
        using var minusInfinity = double.NegativeInfinity.ToScalar();
        return zeros(mask.shape, dtype, Device).masked_fill_(mask.logical_not(), minusInfinity);
    }

    /// <summary>
    /// The training forward with activation checkpointing: the decoder layers run without building a graph, keeping only
    /// each layer's input; <paramref name="head"/> receives the final (normed) hidden states as part of a graph rooted
    /// just after the last layer and must call backward on its loss; then each layer is recomputed from its saved input,
    /// last to first, and back-propagated on its own. Peak activation memory is one layer's graph instead of all of them,
    /// for about one extra forward pass. Gradients equal the ordinary forward's.
    /// </summary>
    /// <param name="dropout">The generator the LoRA dropout draws from: each layer's recomputation replays the draws
    /// of its first run, and afterwards the generator is left where the first pass left it.</param>
    public void BackwardCheckpointed(Tensor inputIds, Tensor positionIds, PackedSegments? segments, Generator? dropout, Action<Tensor> head)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(head);
        using var scope = NewDisposeScope();
        var inputs = new List<Tensor>(Body.Layers.Count + 1);
        var rngStates = new List<Tensor?>(Body.Layers.Count);
        RotaryAngles angles;
        Tensor? mask = null;
        using (no_grad())
        {
            inputs.Add(Body.Embed(inputIds));
            angles = _rotary.Angles(positionIds, inputs[0].dtype);
            mask = PlainMask(inputIds.size(1), 0, segments, inputs[0].dtype);
            for (var i = 0; i < Body.Layers.Count; i++)
            {
                rngStates.Add(dropout?.get_state());
                inputs.Add(Body.Layers[i].Forward(inputs[i], angles, mask, null, segments: segments));
            }
        }
        var afterForward = dropout?.get_state();

        var last = inputs[^1].detach().requires_grad_(true);
        head(Body.Norm.forward(last));
        var gradient = last.grad;
        if (gradient is null)
        {
            // Nothing trained in this batch (every label ignored): no gradient to carry down.
            if (dropout is not null) dropout.set_state(afterForward!);
            return;
        }
        for (var i = Body.Layers.Count - 1; i >= 0; i--)
        {
            using var layerScope = NewDisposeScope();
            if (dropout is not null) dropout.set_state(rngStates[i]!);
            var input = inputs[i].detach().requires_grad_(true);
            var output = Body.Layers[i].Forward(input, angles, mask, null, segments: segments);
            output.backward([gradient]);
            gradient = input.grad!.detach().MoveToOuterDisposeScope();
            inputs[i + 1].Dispose(); // no longer needed: free it as the walk goes down
        }
        if (dropout is not null) dropout.set_state(afterForward!);
    }

    /// <summary>Logits in float32 for the given hidden states [.., hidden] → [.., vocab].</summary>
    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var weight = _lmHead?.Weight ?? Body.EmbedTokens;
        return nn.functional.linear(hidden, weight).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// What hidden states receive through <see cref="Logits"/> from a gradient on the logits [.., vocab] → [.., hidden],
    /// computed as autograd computes it (the gradient cast to the model's dtype, times the head's weight), for losses
    /// whose logit gradient is known in closed form.
    /// </summary>
    public Tensor HiddenGradient(Tensor logitsGradient)
    {
        ArgumentNullException.ThrowIfNull(logitsGradient);
        using var scope = NewDisposeScope();
        var weight = _lmHead?.Weight ?? Body.EmbedTokens;
        return logitsGradient.to_type(weight.dtype).matmul(weight).MoveToOuterDisposeScope();
    }

    /// <summary>A KV cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> tokens.</summary>
    public IReadOnlyList<LayerKvCache> NewCache(long batch, long capacity) =>
        Enumerable.Range(0, Config.NumLayers)
            .Select(_ => new LayerKvCache(batch, Config.NumKeyValueHeads, capacity, Config.HeadDim, DType, Device))
            .ToList();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rotary.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>The untied output projection, registered so its weight appears as <c>lm_head.weight</c>.</summary>
    private sealed class LmHead : nn.Module
    {
        public LmHead(Parameter weight) : base("lm_head")
        {
            Weight = weight;
            register_parameter("weight", weight);
        }

        public Parameter Weight { get; }
    }
}

/// <summary><c>model</c>: embeddings, decoder layers and the final norm.</summary>
public sealed class DecoderStack : nn.Module
{
    public DecoderStack(ModelConfig config, WeightLoader weights) : base("model")
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        Embedding = new EmbeddingTable(weights.Parameter("model.embed_tokens.weight", config.VocabSize, config.HiddenSize));
        Layers = new ModuleList<DecoderLayer>(
            Enumerable.Range(0, config.NumLayers).Select(i => new DecoderLayer(config, weights, $"model.layers.{i}")).ToArray());
        Norm = new RmsNorm(weights, "model.norm", config.HiddenSize, config.RmsNormEps);
        register_module("embed_tokens", Embedding);
        register_module("layers", Layers);
        register_module("norm", Norm);
    }

    // Modules may hold only what they register themselves: TorchSharp also collects Parameter-typed fields.
    private EmbeddingTable Embedding { get; }

    public Parameter EmbedTokens => Embedding.Weight;

    public ModuleList<DecoderLayer> Layers { get; }

    public RmsNorm Norm { get; }

    public Tensor Embed(Tensor inputIds)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        using var flat = inputIds.reshape(-1);
        using var rows = EmbedTokens.index_select(0, flat);
        return rows.view(inputIds.size(0), inputIds.size(1), EmbedTokens.size(1));
    }

    private sealed class EmbeddingTable : nn.Module
    {
        public EmbeddingTable(Parameter weight) : base("embed_tokens")
        {
            Weight = weight;
            register_parameter("weight", weight);
        }

        public Parameter Weight { get; }
    }
}
