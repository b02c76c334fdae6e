using Gpud.Api.Batches;
using Gpud.Api.Errors;
using Gpud.Api.Files;
using Gpud.Api.FineTuning;
using Gpud.Api.Models;
using Gpud.Api.Health;
using Gpud.Api.Inference;
using Gpud.Api.Observability;
using Gpud.Api.Responses;
using Gpud.Api.System;
using Microsoft.Extensions.Options;
using Prometheus;

namespace Gpud.Hosting;

/// <summary>The HTTP pipeline and the route table.</summary>
internal static class GpudApplication
{
    public static WebApplication UseGpud(this WebApplication app)
    {
        app.UseMiddleware<RequestIdMiddleware>();
        // Metrics sit outside the exception handler, so a request that ends in an error is counted with its final
        // status code (and with the route it matched, captured before the handler clears it).
        app.UseRouting();
        app.UseHttpMetrics();
        app.Use(async (context, next) =>
        {
            // The exception handler clears the matched endpoint before answering; put it back so the request's
            // metrics keep their route label (e.g. a 500 stays attributed to /v1/files/{id}/content).
            var endpoint = context.GetEndpoint();
            var routeValues = new RouteValueDictionary(context.Request.RouteValues);
            await next(context);
            if (context.GetEndpoint() is null && endpoint is not null)
            {
                context.SetEndpoint(endpoint);
                context.Request.RouteValues = routeValues;
            }
        });
        // ApiExceptionHandler answers every exception; this delegate is only the fallback the middleware insists on.
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = context => ApiErrors.WriteAsync(context, StatusCodes.Status500InternalServerError,
                "The server had an error while processing your request."),
        });
        app.UseStatusCodePages(StatusCodeErrors.WriteAsync);
        app.UseAuthentication();
        app.UseAuthorization();

        app.UseSwagger();
        app.UseSwaggerUI(o => o.DocumentTitle = "gpud API");

        app.MapHealth();
        var gpus = app.Services.GetRequiredService<Gpud.Services.Devices.GpuMetrics>();
        app.MapMetrics("/metrics").Add(endpoint =>
        {
            // GPU gauges are read from NVML at scrape time, so they are as fresh as the scrape.
            var export = endpoint.RequestDelegate!;
            endpoint.RequestDelegate = context =>
            {
                gpus.Update();
                return export(context);
            };
        });

        var v1 = app.MapGroup("/v1").RequireAuthorization()
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status400BadRequest, typeof(ErrorResponse), ["application/json"]))
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status401Unauthorized, typeof(ErrorResponse), ["application/json"]))
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status404NotFound, typeof(ErrorResponse), ["application/json"]))
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status500InternalServerError, typeof(ErrorResponse), ["application/json"]))
            .AddEndpointFilter(ServiceErrors.AsResults);
        v1.MapFiles();
        v1.MapUploads();
        v1.MapFineTuning();
        v1.MapModels();
        v1.MapTextGeneration();
        v1.MapStoredChatCompletions();
        v1.MapResponses();
        v1.MapBatches();
        v1.MapAdapters();
        v1.MapSystem();
        return app;
    }

    /// <summary>Runs the daemon; a configuration it must refuse ends it with a one-paragraph reason and exit code 78.</summary>
    public static async Task<int> RunGpudAsync(this WebApplication app)
    {
        try
        {
            await app.RunAsync();
            return 0;
        }
        catch (OptionsValidationException e)
        {
            await Console.Error.WriteLineAsync($"gpud: invalid configuration:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", e.Failures)}");
            return ExitCodes.Configuration;
        }
        catch (StartupRefusedException e)
        {
            await Console.Error.WriteLineAsync($"gpud: {e.Message}");
            return ExitCodes.Configuration;
        }
    }
}

/// <summary>Process exit codes systemd can act on (<c>RestartPreventExitStatus=78</c>).</summary>
public static class ExitCodes
{
    /// <summary>EX_CONFIG from sysexits.h: restarting will not help until the configuration changes.</summary>
    public const int Configuration = 78;
}
