using System.Collections.Concurrent;
using System.Diagnostics;
using Prometheus;

namespace Gpud.Services.Devices;

/// <summary>What a device turn is taken for (the <c>workload</c> label).</summary>
public static class DeviceWorkload
{
    public const string Training = "training";
    public const string Serving = "serving";
}

/// <summary>
/// Shares a device between a fine-tuning job and a serving loop at step boundaries: each takes a turn around one step
/// (an optimizer step, or one admit-and-decode iteration), and turns are handed over first come, first served. When
/// both want the device they alternate step by step, so neither starves and their kernels never contend for memory
/// bandwidth at the same moment; alone, either runs back to back at full speed.
/// </summary>
public sealed class DeviceTurns(IMetricFactory factory)
{
    private readonly ConcurrentDictionary<string, Turnstile> _devices = new(StringComparer.Ordinal);

    private readonly Histogram _wait = factory.CreateHistogram("gpud_device_turn_wait_seconds",
        "Time a step waited for its turn on a device shared by training and serving.",
        new HistogramConfiguration { LabelNames = ["device", "workload"], Buckets = Histogram.ExponentialBuckets(0.0005, 4, 10) });

    /// <summary>Waits for the device; dispose the result to hand it on.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired while waiting.</exception>
    public Turn Take(string device, string workload, CancellationToken cancellationToken = default) =>
        Lane(device, workload).Take(cancellationToken);

    /// <summary>One workload's way onto a device, resolved once (a serving loop takes a turn per decode step).</summary>
    public DeviceLane Lane(string device, string workload) =>
        new(_devices.GetOrAdd(device, _ => new Turnstile()), _wait.WithLabels(device, workload));

    /// <summary>A workload's access to one device: its turnstile and its wait-time series.</summary>
    public sealed class DeviceLane
    {
        private readonly Turnstile _turnstile;
        private readonly Histogram.Child _wait;

        internal DeviceLane(Turnstile turnstile, Histogram.Child wait)
        {
            _turnstile = turnstile;
            _wait = wait;
        }

        /// <inheritdoc cref="DeviceTurns.Take(string, string, CancellationToken)"/>
        public Turn Take(CancellationToken cancellationToken = default)
        {
            var started = Stopwatch.GetTimestamp();
            _turnstile.Enter(cancellationToken);
            _wait.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            return new Turn(_turnstile);
        }
    }

    /// <summary>A held turn.</summary>
    public readonly struct Turn : IDisposable
    {
        private readonly Turnstile? _turnstile;

        internal Turn(Turnstile turnstile) => _turnstile = turnstile;

        public void Dispose() => _turnstile?.Exit();
    }

    /// <summary>A fair (FIFO hand-over) mutex: the releaser passes the device straight to the longest waiter.</summary>
    internal sealed class Turnstile
    {
        private readonly Lock _gate = new();
        private readonly LinkedList<Waiter> _waiters = new();
        private bool _held;

        public void Enter(CancellationToken cancellationToken)
        {
            Waiter waiter;
            LinkedListNode<Waiter> node;
            lock (_gate)
            {
                if (!_held && _waiters.Count == 0)
                {
                    _held = true;
                    return;
                }
                waiter = new Waiter();
                node = _waiters.AddLast(waiter);
            }
            try
            {
                waiter.Granted.Wait(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                lock (_gate)
                {
                    if (!waiter.Granted.IsSet)
                    {
                        _waiters.Remove(node);
                        throw;
                    }
                }
                Exit(); // granted just as it was cancelled: pass the turn on
                throw;
            }
            finally
            {
                waiter.Granted.Dispose();
            }
        }

        public void Exit()
        {
            lock (_gate)
            {
                if (_waiters.First is { } next)
                {
                    _waiters.RemoveFirst();
                    next.Value.Granted.Set(); // ownership moves to it; _held stays true
                }
                else
                {
                    _held = false;
                }
            }
        }

        private sealed class Waiter
        {
            public ManualResetEventSlim Granted { get; } = new(false);
        }
    }
}
