using System.Diagnostics;
using System.Globalization;
using Gpud.Engine.Demo;
using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

// gpud-bench generate --model DIR|gpud-tiny [--batch 1] [--prompt-tokens 128] [--new-tokens 64] [--device cpu|cuda:0]
//                     [--dtype float32|bfloat16|float16] [--repeat 3] [--structured true [--schema FILE]] [--adapters K [--rank 16]]
// Prints prefill and decode tokens/s as key=value lines (the scripts parse them).
var arguments = Arguments.Parse(args);
if (arguments.Command == "serve") return await Gpud.Bench.ServeBenchmark.RunAsync(arguments);
if (arguments.Command == "adapters") return Gpud.Bench.ServeBenchmark.WriteAdapters(arguments);
if (arguments.Command == "probe") return Gpud.Bench.Probe.Run();
if (arguments.Command == "make-model") return Gpud.Bench.RandomModel.Write(arguments);
if (arguments.Command == "interop") return Gpud.Bench.Interop.Run(arguments);
if (arguments.Command is not ("generate" or "train"))
{
    Console.Error.WriteLine("usage: gpud-bench generate --model DIR|gpud-tiny [--batch N] [--prompt-tokens N] [--new-tokens N] [--device cpu|cuda:0] [--dtype float32|bfloat16|float16] [--repeat N] [--structured true [--schema FILE]] [--adapters K [--rank 16]]");
    Console.Error.WriteLine("       gpud-bench serve    --url URL --models a,b,c [--concurrency 16] [--requests N] [--max-tokens 64]");
    Console.Error.WriteLine("       gpud-bench adapters --model DIR --out DIR [--count 8] [--rank 16]");
    Console.Error.WriteLine("       gpud-bench train    --model DIR|gpud-tiny [--batch N] [--seq N] [--steps N] [--rank 16] [--device ...] [--dtype ...] [--peak-tflops N]");
    Console.Error.WriteLine("       gpud-bench probe    (libtorch, devices, and gpud's kinds of ops on each device and dtype)");
    Console.Error.WriteLine("       gpud-bench make-model --out DIR [--preset gpud-tiny] [--hidden 2048] [--layers 16] [--heads 32] [--kv-heads 8] [--intermediate 8192] [--vocab 128256] [--tie true]");
    Console.Error.WriteLine("       gpud-bench interop  --model DIR --out DIR [--device cpu|cuda:0]   (adapters + logits for scripts/gpu/peft_interop.py)");
    return 2;
}

var modelPath = arguments.Get("model", DemoModel.Name);
if (modelPath == DemoModel.Name)
{
    // A fresh copy each run, so the creation time is measured too; kept for the transformers peer to load.
    var directory = Path.Combine(Path.GetTempPath(), "gpud-bench", DemoModel.Name);
    if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    var watch = Stopwatch.StartNew();
    modelPath = DemoModel.EnsureCreated(directory);
    Console.WriteLine(FormattableString.Invariant($"demo_create_seconds={watch.Elapsed.TotalSeconds:F3}"));
}
var device = new Device(arguments.Get("device", cuda.is_available() ? "cuda:0" : "cpu"));
var dtype = arguments.Get("dtype", device.type == DeviceType.CUDA ? "bfloat16" : "float32") switch
{
    "bfloat16" => ScalarType.BFloat16,
    "float16" => ScalarType.Float16,
    _ => ScalarType.Float32,
};
var batch = arguments.Int("batch", 1);
var promptTokens = arguments.Int("prompt-tokens", 128);
var newTokens = arguments.Int("new-tokens", 64);
var repeat = arguments.Int("repeat", 3);

using var gpuMemory = new Gpud.Bench.GpuMemoryPeak(device.ToString());
var load = Stopwatch.StartNew();
using var model = CausalLanguageModel.Load(modelPath, device, dtype);
Console.WriteLine(FormattableString.Invariant($"model={modelPath} device={device} dtype={dtype} parameters={model.Config.ParameterCount} load_seconds={load.Elapsed.TotalSeconds:F3} peak_rss_mib_after_load={PeakRssMib():F0}"));

if (arguments.Command == "train")
{
    // Random tokens, every position trained (as a completion-only dataset would be), LoRA on all linear projections.
    var seq = arguments.Int("seq", 512);
    var steps = arguments.Int("steps", 5);
    var rank = arguments.Int("rank", 16);
    var rows = new Random(1234);
    var sequences = Enumerable.Range(0, batch * (steps + 1))
        .Select(i => new Gpud.Engine.Training.TrainingExample(
            Enumerable.Range(0, seq).Select(_ => rows.Next(model.Config.VocabSize)).ToArray(),
            Enumerable.Repeat(true, seq).ToArray(), i + 1, false))
        .ToList();
    var parameters = Gpud.Engine.Lora.LoraModel.Attach(model, new Gpud.Engine.Lora.LoraSettings(rank, 2 * rank), ["all-linear"], 1);
    var options = new Gpud.Engine.Training.TrainingOptions(1, batch, 1e-4, 1, Gpud.Engine.Training.LearningRateSchedule.Constant,
        MaxLength: seq, MaxTokensPerMicroBatch: batch * seq);
    var trainer = new Gpud.Engine.Training.LoraTrainer(model, parameters, options);
    var times = new List<double>();
    var clock = Stopwatch.StartNew();
    trainer.Train(sequences, p =>
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize();
        times.Add(clock.Elapsed.TotalSeconds);
        clock.Restart();
    });
    var measured = times.Skip(1).ToList(); // the first step warms kernels and the allocator up
    var perStep = measured.Average();
    Console.WriteLine(FormattableString.Invariant($"batch={batch} seq={seq} rank={rank} steps={measured.Count} trainable_parameters={parameters.Sum(p => p.numel())}"));
    Console.WriteLine(FormattableString.Invariant($"train_tokens_per_second={batch * seq / perStep:F1}"));
    Console.WriteLine(FormattableString.Invariant($"step_seconds={perStep:F3}"));
    Console.WriteLine(FormattableString.Invariant($"peak_rss_mib={PeakRssMib():F0}"));
    if (gpuMemory.PeakBytes is { } peak) Console.WriteLine(FormattableString.Invariant($"peak_gpu_memory_mib={peak / 1048576.0:F0}"));
    // MFU as the issue defines it: 6 x N_active x tokens/s over the device's dense bf16 peak. N_active leaves out the
    // embedding lookup (no matmul) unless the table doubles as the tied LM head; attention's seq^2 FLOPs are not counted.
    var active = model.Config.ParameterCount - (model.Config.TieWordEmbeddings ? 0 : (long)model.Config.VocabSize * model.Config.HiddenSize);
    Console.WriteLine(FormattableString.Invariant($"active_parameters={active}"));
    var peakTflops = double.Parse(arguments.Get("peak-tflops", "0"), CultureInfo.InvariantCulture);
    if (peakTflops > 0) Console.WriteLine(FormattableString.Invariant($"mfu={6.0 * active * batch * seq / perStep / (peakTflops * 1e12):F3}"));
    return 0;
}

var random = new Random(1234);
var prompts = Enumerable.Range(0, batch)
    .Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, promptTokens).Select(_ => random.Next(model.Config.VocabSize)).ToArray())
    .ToList();
var generator = new TokenGenerator(model);
var greedy = Enumerable.Repeat(SamplingParameters.Greedy(newTokens), batch).ToList();
var prefillOnly = Enumerable.Repeat(SamplingParameters.Greedy(1), batch).ToList();

generator.Generate(prompts, prefillOnly); // warm-up: kernels, allocator
var prefill = Best(repeat, () => generator.Generate(prompts, prefillOnly));
var full = Best(repeat, () => generator.Generate(prompts, greedy));
var decodeSeconds = Math.Max(full - prefill, 1e-9);
Console.WriteLine(FormattableString.Invariant($"batch={batch} prompt_tokens={promptTokens} new_tokens={newTokens}"));
Console.WriteLine(FormattableString.Invariant($"prefill_tokens_per_second={batch * promptTokens / prefill:F1}"));
Console.WriteLine(FormattableString.Invariant($"decode_tokens_per_second={batch * (newTokens - 1) / decodeSeconds:F1}"));
Console.WriteLine(FormattableString.Invariant($"generate_seconds={full:F3}"));
if (gpuMemory.PeakBytes is { } generatePeak) Console.WriteLine(FormattableString.Invariant($"peak_gpu_memory_mib={generatePeak / 1048576.0:F0}"));

var adapterCount = arguments.Int("adapters", 0);
if (adapterCount > 0)
{
    // The same batch decoded with LoRA adapters (rank --rank, all linear projections) from a serving pool, rows spread
    // round-robin over adapterCount distinct ones: what serving many fine-tuned models costs over the base model alone,
    // with each way a pool can compute a decode step (each row's own matrices gathered; the whole pool at once, masked).
    var rank = arguments.Int("rank", 16);
    var slots = Enumerable.Range(0, batch).Select(i => 1 + i % adapterCount).ToList();
    var baseDecode = batch * (newTokens - 1) / decodeSeconds;
    Console.WriteLine(FormattableString.Invariant($"adapters={adapterCount} rank={rank}"));
    foreach (var (wholePool, name) in new[] { (false, "gathered"), (true, "whole_pool") })
    {
        using var pool = new Gpud.Engine.Lora.AdapterPool(model, adapterCount, rank, wholePool);
        using (var draws = new Generator(4321))
        {
            for (var slot = 1; slot <= adapterCount; slot++)
            {
                using var scope = NewDisposeScope();
                var projections = Gpud.Engine.Lora.LoraModel.ProjectionShapes(model.Config).ToDictionary(p => p.Path,
                    p => new Gpud.Engine.Lora.LoraProjection(p.Name, randn([rank, p.InFeatures], generator: draws) * 0.01, randn([p.OutFeatures, rank], generator: draws) * 0.01, null));
                pool.Load(slot, new Gpud.Engine.Lora.LoraWeights(new Gpud.Engine.Lora.LoraSettings(rank, 2 * rank), projections, null));
            }
        }
        var adapted = new TokenGenerator(model, pool);
        adapted.Generate(prompts, prefillOnly, adapterSlots: slots);
        var adaptedPrefill = Best(repeat, () => adapted.Generate(prompts, prefillOnly, adapterSlots: slots));
        var adaptedFull = Best(repeat, () => adapted.Generate(prompts, greedy, adapterSlots: slots));
        var adaptedDecode = batch * (newTokens - 1) / Math.Max(adaptedFull - adaptedPrefill, 1e-9);
        if (!wholePool) Console.WriteLine(FormattableString.Invariant($"adapters_prefill_tokens_per_second={batch * promptTokens / adaptedPrefill:F1}"));
        Console.WriteLine(FormattableString.Invariant($"adapters_{name}_decode_tokens_per_second={adaptedDecode:F1}"));
        Console.WriteLine(FormattableString.Invariant($"ratio_adapters_{name}_over_base_decode={adaptedDecode / baseDecode:F2}"));
    }
}

if (arguments.Get("structured", "false") == "true")
{
    // The same batch decoded under a JSON schema (response_format json_schema): the cost of the token masks. The first
    // run walks the vocabulary for each new grammar state (cold); the repeats find every state's mask remembered
    // (warm: a service answering with one schema), so warm over free is the per-step overhead of masking alone.
    var schemaFile = arguments.Get("schema", "");
    var schema = System.Text.Json.JsonDocument.Parse(schemaFile.Length > 0 ? File.ReadAllText(schemaFile) : """
        {"type": "object", "required": ["name", "age", "tags"], "additionalProperties": false,
         "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}
        """).RootElement;
    var vocabulary = Gpud.Engine.Tokenization.TextTokenizer.Load(modelPath).TokenBytes();
    var constraint = new Gpud.Engine.Generation.Constraints.StructuredOutput(vocabulary).JsonSchema(schema);
    var constrained = Enumerable.Repeat(SamplingParameters.Greedy(newTokens) with { Constraint = constraint }, batch).ToList();
    var coldClock = Stopwatch.StartNew();
    var tokens = generator.Generate(prompts, constrained).Sum(r => r.TokenIds.Count);
    var cold = coldClock.Elapsed.TotalSeconds;
    var warm = Best(repeat, () => generator.Generate(prompts, constrained));
    var constrainedRate = Math.Max(tokens - batch, 1) / Math.Max(warm - prefill, 1e-9);
    Console.WriteLine(FormattableString.Invariant($"structured_tokens={tokens} vocab={vocabulary.Count}"));
    Console.WriteLine(FormattableString.Invariant($"structured_cold_seconds={cold:F3} structured_warm_seconds={warm:F3}"));
    Console.WriteLine(FormattableString.Invariant($"structured_decode_tokens_per_second={constrainedRate:F1}"));
    Console.WriteLine(FormattableString.Invariant($"ratio_structured_over_free_decode={constrainedRate / (batch * (newTokens - 1) / decodeSeconds):F2}"));
}
return 0;

// VmHWM: the process's peak resident set so far (Linux): "VmHWM:<tab>[spaces]N kB", the spaces not always there.
static double PeakRssMib() =>
    File.Exists("/proc/self/status")
        ? double.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal))
            .Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024
        : double.NaN;

double Best(int times, Action action)
{
    var best = double.MaxValue;
    for (var i = 0; i < times; i++)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize();
        var watch = Stopwatch.StartNew();
        action();
        if (device.type == DeviceType.CUDA) cuda.synchronize();
        best = Math.Min(best, watch.Elapsed.TotalSeconds);
    }
    return best;
}

internal sealed record Arguments(string Command, Dictionary<string, string> Options)
{
    public static Arguments Parse(string[] args)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 1; i + 1 < args.Length; i += 2) options[args[i].TrimStart('-')] = args[i + 1];
        return new Arguments(args.Length > 0 ? args[0] : "", options);
    }

    public string Get(string name, string fallback) => Options.TryGetValue(name, out var value) ? value : fallback;

    public int Int(string name, int fallback) => Options.TryGetValue(name, out var value) ? int.Parse(value, CultureInfo.InvariantCulture) : fallback;
}
