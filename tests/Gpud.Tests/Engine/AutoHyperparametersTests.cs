using Gpud.Engine.Training;

namespace Gpud.Tests.Engine;

public sealed class AutoHyperparametersTests
{
    [Theory]
    [InlineData(10, 10)]      // 10 x 3 < 100: raised to 100 / 10
    [InlineData(20, 5)]
    [InlineData(3, 25)]       // capped at 25
    [InlineData(34, 3)]       // 102 >= 100
    [InlineData(8_333, 3)]    // 24,999 <= 25,000
    [InlineData(10_000, 2)]   // 30,000 > 25,000: lowered to 25,000 / 10,000
    [InlineData(40_000, 1)]   // never below 1
    public void Auto_epochs_follow_the_cookbook(int examples, int epochs) => Assert.Equal(epochs, AutoHyperparameters.Epochs(examples));

    [Theory]
    [InlineData(10, 1)]
    [InlineData(1_000, 2)]
    [InlineData(50_000, 100)]
    [InlineData(1_000_000, 256)]
    public void Auto_batch_size_is_a_fifth_of_a_percent_capped_at_256(int examples, int batch) =>
        Assert.Equal(batch, AutoHyperparameters.BatchSize(examples));
}
