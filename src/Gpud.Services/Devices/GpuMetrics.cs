using Gpud.Engine.Compute;
using Prometheus;

namespace Gpud.Services.Devices;

/// <summary>
/// NVIDIA GPU telemetry as <c>gpud_gpu_*</c> gauges labelled by <c>device</c> (<c>cuda:N</c>), read from NVML when
/// Prometheus scrapes. On a machine without the driver nothing is exported: no series rather than zeros.
/// </summary>
public sealed class GpuMetrics(IMetricFactory factory, ComputeBackend backend)
{
    private readonly Gauge _utilization = factory.CreateGauge("gpud_gpu_utilization_percent",
        "Percent of the last sample period in which a kernel ran on the GPU (NVML).", ["device"]);
    private readonly Gauge _memoryUsed = factory.CreateGauge("gpud_gpu_memory_used_bytes", "GPU memory in use, all processes (NVML).", ["device"]);
    private readonly Gauge _memoryTotal = factory.CreateGauge("gpud_gpu_memory_total_bytes", "GPU memory on the board (NVML).", ["device"]);
    private readonly Gauge _temperature = factory.CreateGauge("gpud_gpu_temperature_celsius", "GPU core temperature (NVML).", ["device"]);
    private readonly Gauge _power = factory.CreateGauge("gpud_gpu_power_watts", "GPU board power draw (NVML).", ["device"]);

    /// <summary>The current reading of every GPU this process sees; empty without a driver (or before libtorch loaded).</summary>
    public IReadOnlyList<GpuSample> Sample() => backend.Nvml?.Sample() ?? [];

    /// <summary>Refreshes the gauges (called before each scrape).</summary>
    public void Update()
    {
        foreach (var gpu in Sample())
        {
            _memoryUsed.WithLabels(gpu.Device).Set(gpu.MemoryUsedBytes);
            _memoryTotal.WithLabels(gpu.Device).Set(gpu.MemoryTotalBytes);
            if (gpu.UtilizationPercent is { } u) _utilization.WithLabels(gpu.Device).Set(u);
            if (gpu.TemperatureCelsius is { } t) _temperature.WithLabels(gpu.Device).Set(t);
            if (gpu.PowerWatts is { } p) _power.WithLabels(gpu.Device).Set(p);
        }
    }
}
