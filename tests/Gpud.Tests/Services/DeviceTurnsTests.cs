using Gpud.Services.Devices;
using Prometheus;

namespace Gpud.Tests.Services;

public sealed class DeviceTurnsTests
{
    private static DeviceTurns NewTurns() => new(Metrics.WithCustomRegistry(Metrics.NewCustomRegistry()));

    [Fact]
    public void Two_workloads_that_both_want_the_device_alternate_step_by_step_and_never_overlap()
    {
        var turns = NewTurns();
        var order = new List<char>();
        var inside = 0;
        var overlapped = false;
        using var ready = new Barrier(2);

        void Work(char who)
        {
            ready.SignalAndWait();
            for (var i = 0; i < 40; i++)
            {
                using var turn = turns.Take("cuda:0", who == 'T' ? DeviceWorkload.Training : DeviceWorkload.Serving);
                if (Interlocked.Increment(ref inside) > 1) overlapped = true;
                lock (order) order.Add(who);
                Thread.Sleep(2); // a step
                Interlocked.Decrement(ref inside);
            }
        }

        var training = new Thread(() => Work('T'));
        var serving = new Thread(() => Work('S'));
        training.Start();
        serving.Start();
        training.Join();
        serving.Join();

        Assert.False(overlapped);
        Assert.Equal(80, order.Count);
        // First come, first served: a step that ends hands the device to the one waiting, so repeats occur only while
        // the other has not yet queued (the start) or has finished (the end).
        var repeats = order.Zip(order.Skip(1)).Count(p => p.First == p.Second);
        Assert.True(repeats <= 4, new string([.. order]));
    }

    [Fact]
    public async Task Other_devices_are_not_held_up_and_a_cancelled_waiter_gives_up_its_place()
    {
        var turns = NewTurns();
        var held = turns.Take("cuda:0", DeviceWorkload.Training);

        using (turns.Take("cuda:1", DeviceWorkload.Serving))
        {
        }

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        Assert.ThrowsAny<OperationCanceledException>(() => turns.Take("cuda:0", DeviceWorkload.Serving, cancel.Token));
        var next = Task.Run(() =>
        {
            using var turn = turns.Take("cuda:0", DeviceWorkload.Serving);
        });
        Assert.NotSame(next, await Task.WhenAny(next, Task.Delay(50)));
        held.Dispose(); // the cancelled waiter is gone: the device goes to the next one
        Assert.Same(next, await Task.WhenAny(next, Task.Delay(5000)));
    }
}
