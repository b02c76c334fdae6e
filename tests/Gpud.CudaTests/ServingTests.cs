using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>Multi-adapter batching on CUDA in bf16: each row of a mixed batch equals its adapter attached alone, for a
/// prompt (each row's matrices gathered) and for one token per row (a decode step over the whole pool).</summary>
public sealed class ServingTests : IDisposable
{
    private static readonly string ModelDir = Gpu.Fixture("models/llama3-tiny");
    private readonly string _dir = Directory.CreateTempSubdirectory("gpud-cuda-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Rows_for_different_adapters_in_one_bf16_batch_match_each_adapter_alone()
    {
        var device = Gpu.Require();
        string[] adapters =
        [
            SyntheticAdapter.Write(Path.Combine(_dir, "a1"), ModelDir, 1, new LoraSettings(4, 8), ["all-linear"]),
            SyntheticAdapter.Write(Path.Combine(_dir, "a2"), ModelDir, 2, new LoraSettings(8, 4, UseRslora: true), ["q_proj", "v_proj", "down_proj"]),
            SyntheticAdapter.Write(Path.Combine(_dir, "a3"), ModelDir, 3, new LoraSettings(2, 4, UseDora: true), ["all-linear"]),
        ];
        long[] prompt = [5, 17, 99, 3, 42, 8, 200, 31];
        int[] slots = [0, 1, 2, 3, 1, 3];

        using var model = CausalLanguageModel.Load(ModelDir, device, ScalarType.BFloat16);
        using var pool = new AdapterPool(model, slots: 3, maxRank: 8);
        for (var i = 0; i < adapters.Length; i++)
        {
            using var weights = PeftAdapter.Read(adapters[i], model.Config);
            pool.Load(i + 1, weights);
        }
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(prompt, device: device).unsqueeze(0).expand(slots.Length, -1);
        var positions = arange(prompt.Length, ScalarType.Int64, device).unsqueeze(0).expand(slots.Length, -1);
        using var batch = pool.Select(slots);
        var batched = model.Logits(model.Hidden(ids, positions, adapters: batch));

        // One token per row, the shape of a decode step: on CUDA the pool computes it over every slot at once, masked.
        Assert.True(pool.WholePoolDecode);
        var stepped = model.Logits(model.Hidden(ids[.., ..1], positions[.., ..1], adapters: batch));

        var alone = new Tensor[4];
        var aloneStep = new Tensor[4];
        for (var slot = 0; slot < 4; slot++)
        {
            using var single = CausalLanguageModel.Load(ModelDir, device, ScalarType.BFloat16);
            if (slot > 0) PeftAdapter.Load(adapters[slot - 1], single);
            alone[slot] = single.Logits(single.Hidden(ids[..1], positions[..1]));
            aloneStep[slot] = single.Logits(single.Hidden(ids[..1, ..1], positions[..1, ..1]));
        }
        for (var row = 0; row < slots.Length; row++)
        {
            var (maxAbs, agree) = Gpu.Compare(alone[slots[row]], batched[row..(row + 1)]);
            Assert.True(maxAbs < 0.1, $"row {row} (slot {slots[row]}): max |logit difference| = {maxAbs:g3}");
            Assert.True(agree >= 0.85, $"row {row} (slot {slots[row]}): top-1 agreement {agree:P0}");
            var (stepMaxAbs, _) = Gpu.Compare(aloneStep[slots[row]], stepped[row..(row + 1)]);
            Assert.True(stepMaxAbs < 0.1, $"row {row} (slot {slots[row]}), one token: max |logit difference| = {stepMaxAbs:g3}");
        }
        // The adapters change the output, else the comparison proves nothing.
        for (var slot = 1; slot < 4; slot++) Assert.True(Gpu.Compare(alone[0], alone[slot]).MaxAbs > 0.5, $"adapter {slot} changes nothing");
    }
}
