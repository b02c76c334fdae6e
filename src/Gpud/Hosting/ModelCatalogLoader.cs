using Gpud.Services.Models;

namespace Gpud.Hosting;

/// <summary>Checks the configured model directories (and creates gpud-tiny) in the background after start-up.</summary>
internal sealed class ModelCatalogLoader(ModelCatalog catalog) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.Run(() => catalog.LoadAll(stoppingToken), stoppingToken);
}
