using Gpud.Engine.Compute;
using TorchSharp;

namespace Gpud.Tests.Engine;

public sealed class ComputeBackendTests
{
    [Fact]
    public void Libtorch_loads_on_this_machine_and_computes_a_matmul()
    {
        // On stock Debian 12 this only works because the build weakened libLibTorchSharp.so's GLIBCXX_3.4.32 need.
        var info = new ComputeBackend().Initialize();

        Assert.StartsWith("2.10", info.LibTorchVersion);
        Assert.Contains(info.Devices, d => d.Id == "cpu" && d.TotalMemoryBytes > 0);

        using var scope = torch.NewDisposeScope();
        var a = torch.tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var b = torch.tensor(new float[] { 5, 6, 7, 8 }).reshape(2, 2);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, a.matmul(b).data<float>().ToArray());
    }
}
