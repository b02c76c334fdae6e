using TorchSharp;

namespace Gpud.Engine.Weights;

/// <summary>Named tensors of a checkpoint, read one at a time so a model never needs two full copies in memory.</summary>
public interface IWeightSource : IDisposable
{
    IReadOnlyCollection<string> Names { get; }

    bool Contains(string name);

    /// <summary>Shape of a stored tensor without reading it.</summary>
    long[] ShapeOf(string name);

    /// <summary>Reads a tensor into a new CPU tensor of <paramref name="dtype"/>.</summary>
    torch.Tensor Read(string name, torch.ScalarType dtype);
}
