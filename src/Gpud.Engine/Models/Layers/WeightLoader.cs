using Gpud.Engine.Weights;
using TorchSharp;
using TorchSharp.Modules;

namespace Gpud.Engine.Models.Layers;

/// <summary>Reads named checkpoint tensors as frozen parameters on the target device, checking each shape.</summary>
public sealed class WeightLoader(IWeightSource source, torch.Device device, torch.ScalarType dtype)
{
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public torch.Device Device { get; } = device;

    public torch.ScalarType DType { get; } = dtype;

    public IWeightSource Source { get; } = source;

    public bool Has(string name) => Source.Contains(name);

    public Parameter Parameter(string name, params long[] shape)
    {
        var cpu = Read(name, shape);
        var tensor = Device.type == DeviceType.CPU ? cpu : MoveAndDispose(cpu);
        return new Parameter(tensor, requires_grad: false);
    }

    /// <summary>
    /// Reads a tensor into <paramref name="destination"/> (a slice of a larger tensor on the target device, in its dtype)
    /// and returns it as a frozen parameter sharing that memory.
    /// </summary>
    public Parameter ParameterInto(string name, torch.Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        using (var cpu = Read(name, destination.shape)) destination.copy_(cpu);
        return new Parameter(destination, requires_grad: false);
    }

    private torch.Tensor Read(string name, long[] shape)
    {
        if (!Source.Contains(name)) throw new ModelLoadException($"The checkpoint is missing tensor '{name}'.");
        var stored = Source.ShapeOf(name);
        if (!stored.SequenceEqual(shape))
            throw new ModelLoadException($"Tensor '{name}' has shape [{string.Join(", ", stored)}]; the config implies [{string.Join(", ", shape)}].");
        _used.Add(name);
        return Source.Read(name, DType);
    }

    /// <summary>Checkpoint tensors nothing asked for (besides buffers Hugging Face also ignores).</summary>
    public IEnumerable<string> Unused() =>
        Source.Names.Where(n => !_used.Contains(n) && !n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal));

    private torch.Tensor MoveAndDispose(torch.Tensor cpu)
    {
        using (cpu)
        {
            return cpu.to(Device);
        }
    }
}
