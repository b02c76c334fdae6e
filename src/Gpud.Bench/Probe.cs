using System.Globalization;
using Gpud.Engine.Compute;
using static TorchSharp.torch;

namespace Gpud.Bench;

/// <summary>
/// <c>gpud-bench probe</c>: loads libtorch the way the daemon does and runs the kinds of ops gpud needs (matmul in each
/// dtype, SDPA, a backward pass) on every device, so a libtorch that TorchSharp was not built against (the GPU bundle on
/// PyTorch 2.11) shows at once which of them fail. Prints key=value lines; exits 1 if any op fails.
/// </summary>
internal static class Probe
{
    public static int Run()
    {
        var info = new ComputeBackend().Initialize();
        Console.WriteLine(FormattableString.Invariant($"libtorch={info.LibTorchVersion} cuda_available={info.CudaAvailable}"));
        foreach (var device in info.Devices)
            Console.WriteLine(FormattableString.Invariant($"device={device.Id} name=\"{device.Name}\" total_memory_bytes={device.TotalMemoryBytes}"));
        if (info.CudaAvailable) Console.WriteLine($"flash_sdp_enabled={backends.cuda.flash_sdp_enabled()}");

        var failures = 0;
        foreach (var device in info.Devices)
        {
            var target = new Device(device.Id);
            ScalarType[] dtypes = device.Id == "cpu" ? [ScalarType.Float32] : [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16];
            foreach (var dtype in dtypes)
            {
                try
                {
                    var error = Check(target, dtype);
                    var ok = error < (dtype == ScalarType.Float32 ? 1e-3 : 5e-2);
                    if (!ok) failures++;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"probe device={device.Id} dtype={dtype} max_error={error:g3} {(ok ? "ok" : "WRONG")}"));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    failures++;
                    Console.WriteLine($"probe device={device.Id} dtype={dtype} FAILED: {e.GetBaseException().Message.Split('\n')[0]}");
                }
            }
        }
        Console.WriteLine(failures == 0 ? "probe=ok" : $"probe=failed ({failures})");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>matmul, SDPA, RMS-norm-like reductions, embedding lookup and a backward pass, against float64 on the CPU.</summary>
    private static double Check(Device device, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(1);
        var x = randn([2, 64, 128], generator: generator);
        var w = randn([128, 128], generator: generator) / Math.Sqrt(128);
        var table = randn([300, 128], generator: generator);
        var ids = randint(300, [2, 64], generator: generator);

        Tensor Forward(Tensor input, Tensor weight, Tensor embeddings, ScalarType type, Device on)
        {
            var h = input.to(type, on) + embeddings.to(type, on).index_select(0, ids.to(on).flatten()).view(2, 64, 128);
            h = h * (h.to(ScalarType.Float32).pow(2).mean([-1], keepdim: true) + 1e-5).rsqrt().to(type);
            var q = h.matmul(weight.to(type, on)).view(2, 64, 4, 32).transpose(1, 2);
            var attended = nn.functional.scaled_dot_product_attention(q, q, q, null, 0.0, true);
            return attended.transpose(1, 2).reshape(2, 64, 128).to(ScalarType.Float32);
        }

        var expected = Forward(x, w, table, ScalarType.Float64, CPU).to(ScalarType.Float32);
        var trainable = w.to(dtype, device).detach().requires_grad_(true);
        var actual = Forward(x, trainable, table, dtype, device);
        actual.sum().backward();
        if (trainable.grad is null || !trainable.grad.isfinite().all().item<bool>()) throw new InvalidOperationException("backward gave no finite gradient");
        return (actual.cpu() - expected).abs().max().item<float>();
    }
}
