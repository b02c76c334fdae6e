using Gpud.Hosting;

namespace Gpud.Tests.Hosting;

public sealed class ListenAddressGuardTests
{
    [Theory]
    [InlineData("http://127.0.0.1:8080", true)]
    [InlineData("http://localhost:8080", true)]
    [InlineData("http://[::1]:8080", true)]
    [InlineData("http://127.0.0.2:9000", true)]
    [InlineData("unix:/run/gpud/gpud.sock", true)]
    [InlineData("http://0.0.0.0:8080", false)]
    [InlineData("http://*:8080", false)]
    [InlineData("http://+:8080", false)]
    [InlineData("http://[::]:8080", false)]
    [InlineData("http://10.1.2.3:8080", false)]
    [InlineData("http://gpu-node-7:8080", false)]
    public void Only_loopback_addresses_count_as_private(string url, bool loopback) =>
        Assert.Equal(loopback, ListenAddressGuard.IsLoopback(url));
}
