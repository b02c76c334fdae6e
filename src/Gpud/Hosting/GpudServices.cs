using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Health;
using Gpud.Engine.Compute;
using Gpud.Engine.Demo;
using Gpud.Services.Batches;
using Gpud.Services.ChatCompletions;
using Gpud.Services.Devices;
using Gpud.Services.Models;
using Gpud.Services.Files;
using Gpud.Services.FineTuning;
using Gpud.Services.Inference;
using Gpud.Storage.Adapters;
using Gpud.Storage.FineTuning;
using Prometheus;
using Gpud.Storage.Blobs;
using Gpud.Storage.Files;
using Gpud.Storage.Sqlite;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Gpud.Hosting;

/// <summary>The composition root: every service gpud runs with, wired once.</summary>
internal static class GpudServices
{
    public static IServiceCollection AddGpud(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<GpudOptions>()
            .Bind(configuration.GetSection(GpudOptions.Section))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<GpudOptions>, GpudOptionsValidator>();
        services.AddOptions<ApiKeyOptions>()
            .Configure(o => ApiKeyOptions.Bind(o, configuration))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ApiKeyOptions>, ApiKeyOptionsValidator>();
        services.AddOptions<ModelOptions>()
            .Bind(configuration.GetSection(GpudOptions.Section))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ModelOptions>, ModelOptionsValidator>();
        services.AddOptions<FineTuningOptions>()
            .Bind(configuration.GetSection(GpudOptions.Section))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<FineTuningOptions>, FineTuningOptionsValidator>();
        services.AddOptions<InferenceOptions>()
            .Bind(configuration.GetSection(GpudOptions.Section))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<InferenceOptions>, InferenceOptionsValidator>();

        // State, then the services over it. Lower layers take plain values, not IOptions, so they stay host-agnostic.
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new GpudDatabase(sp.GetRequiredService<IOptions<GpudOptions>>().Value.DatabasePath));
        services.AddSingleton(sp => new BlobStore(sp.GetRequiredService<IOptions<GpudOptions>>().Value.DataDir));
        services.AddSingleton<FileRepository>();
        services.AddSingleton(sp => new FilesLimits(sp.GetRequiredService<IOptions<GpudOptions>>().Value.MaxUploadBytes));
        services.AddSingleton<FilesService>();
        services.AddSingleton<UploadRepository>();
        services.AddSingleton<UploadsService>();
        services.AddSingleton<ComputeBackend>();
        services.AddSingleton(sp =>
        {
            var gpud = sp.GetRequiredService<IOptions<GpudOptions>>().Value;
            var models = sp.GetRequiredService<IOptions<ModelOptions>>().Value.Models
                .Select(m => new BaseModelDefinition(m.Key, m.Value.Path, m.Value.Dtype, m.Value.Devices))
                .ToList();
            return new ModelCatalog(models, Path.Combine(gpud.DataDir, "models", DemoModel.Name), sp.GetRequiredService<ILogger<ModelCatalog>>());
        });
        services.AddSingleton(sp =>
        {
            var gpud = sp.GetRequiredService<IOptions<GpudOptions>>().Value;
            var tuning = sp.GetRequiredService<IOptions<FineTuningOptions>>().Value;
            return new FineTuningSettings(gpud.DataDir, tuning.Devices.Select(d => new DeviceSlotDefinition(d.Name, d.HourlyPrice)).ToList(),
                tuning.Training.KeepCheckpoints, tuning.Training.MaxSequenceLength, TimeSpan.FromMilliseconds(tuning.Training.MetricsEventIntervalMs));
        });
        // prometheus-net's event-counter and Meter bridges export runtime counters under names that break Prometheus'
        // conventions (promtool rejects "…_count" gauges); its own process and GC metrics cover the same ground.
        Prometheus.Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions { SuppressEventCounters = true, SuppressMeters = true, SuppressDebugMetrics = true });
        services.AddSingleton<IMetricFactory>(_ => Prometheus.Metrics.DefaultFactory);
        services.AddSingleton<FineTuningMetrics>();
        services.AddSingleton<GpuMetrics>();
        services.AddSingleton<DeviceTurns>();
        services.AddSingleton<JobRepository>();
        services.AddSingleton<JobEvents>();
        services.AddSingleton<JobRunner>();
        services.AddSingleton<FinishedJobFiles>();
        services.AddSingleton<JobValidationWorker>();
        services.AddSingleton<JobScheduler>();
        services.AddSingleton<FineTuningJobsService>();
        services.AddSingleton(sp =>
        {
            var s = sp.GetRequiredService<IOptions<InferenceOptions>>().Value.Inference;
            return new InferenceSettings(s.Device, s.MaxBatchSize, s.MaxModelLength, s.MaxWaitingRequests, s.MaxGpuAdapters, s.MaxHostAdapters, s.MaxLoraRank, s.MaxPrefillTokens);
        });
        services.AddSingleton<InferenceMetrics>();
        services.AddSingleton<InferenceService>();
        services.AddSingleton<AdapterRepository>();
        services.AddSingleton<Gpud.Storage.Responses.ResponseRepository>();
        services.AddSingleton(sp =>
        {
            var days = sp.GetRequiredService<IOptions<InferenceOptions>>().Value.Inference.StoredResponseDays;
            return new Gpud.Services.Responses.ResponseStore(sp.GetRequiredService<Gpud.Storage.Responses.ResponseRepository>(),
                sp.GetRequiredService<TimeProvider>(), days == 0 ? null : TimeSpan.FromDays(days));
        });
        services.AddSingleton<Gpud.Services.Responses.BackgroundResponses>();
        services.AddSingleton<Gpud.Storage.ChatCompletions.ChatCompletionRepository>();
        services.AddSingleton(sp =>
        {
            var days = sp.GetRequiredService<IOptions<InferenceOptions>>().Value.Inference.StoredResponseDays;
            return new ChatCompletionStore(sp.GetRequiredService<Gpud.Storage.ChatCompletions.ChatCompletionRepository>(),
                sp.GetRequiredService<TimeProvider>(), days == 0 ? null : TimeSpan.FromDays(days));
        });
        services.AddSingleton<Gpud.Storage.Batches.BatchRepository>();
        services.AddSingleton(sp => new BatchSettings(sp.GetRequiredService<IOptions<GpudOptions>>().Value.DataDir,
            sp.GetRequiredService<IOptions<InferenceOptions>>().Value.Inference.BatchRequestsInFlight));
        services.AddSingleton<BatchMetrics>();
        // The Batch API answers each line through the route's own code: the API layer supplies the endpoints.
        services.AddSingleton<IBatchEndpoint>(sp => new Api.Inference.TextGenerationBatchEndpoint(TextGenerationKind.Chat,
            sp.GetRequiredService<ModelResolver>(), sp.GetRequiredService<InferenceService>(), sp.GetRequiredService<ChatCompletionStore>(), Json(sp), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<IBatchEndpoint>(sp => new Api.Inference.TextGenerationBatchEndpoint(TextGenerationKind.Completion,
            sp.GetRequiredService<ModelResolver>(), sp.GetRequiredService<InferenceService>(), sp.GetRequiredService<ChatCompletionStore>(), Json(sp), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<IBatchEndpoint>(sp => new Api.Responses.ResponsesBatchEndpoint(sp.GetRequiredService<ModelResolver>(),
            sp.GetRequiredService<InferenceService>(), sp.GetRequiredService<Gpud.Services.Responses.ResponseStore>(), Json(sp), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<BatchRunner>();
        services.AddSingleton<BatchesService>();
        services.AddSingleton<ModelsService>();
        services.AddSingleton<AdaptersService>();
        services.AddSingleton(sp => new ModelResolver(
            sp.GetRequiredService<ModelCatalog>(), sp.GetRequiredService<JobRepository>(), sp.GetRequiredService<AdapterRepository>(),
            sp.GetRequiredService<FineTuningSettings>(),
            sp.GetRequiredService<IOptions<InferenceOptions>>().Value.Adapters.Select(a => new ConfiguredAdapter(a.Key, a.Value.Path, a.Value.BaseModel)).ToList()));

        // Start-up order matters: refuse an unsafe listen address, then repair state, then load libtorch.
        services.AddHostedService<ListenAddressGuard>();
        services.AddHostedService<StateInitializer>();
        services.AddHostedService<ComputeBackendLoader>();
        services.AddHostedService<ModelCatalogLoader>();
        services.AddHostedService<ExpiryService>();
        services.AddHostedService(sp => sp.GetRequiredService<JobValidationWorker>());
        services.AddHostedService(sp => sp.GetRequiredService<JobScheduler>());
        services.AddHostedService(sp => sp.GetRequiredService<BatchRunner>());
        services.AddHostedService(sp => sp.GetRequiredService<Gpud.Services.Responses.BackgroundResponses>());
        services.AddSingleton<IHttpContextFactory, Gpud.Api.Observability.RequestIdContextFactory>();
        services.AddSystemd();
        services.AddHostedService<SystemdWatchdog>();
        // Stopping waits for running jobs to finish their step and checkpoint; stay inside the unit's TimeoutStopSec=120.
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(100));

        // Authentication pulls in Data Protection; gpud issues no cookies or tokens, so keep its keys in memory
        // rather than writing a key ring to the service user's home (read-only under systemd).
        services.AddDataProtection().UseEphemeralDataProtectionProvider();
        services.AddSingleton<ApiKeyRing>();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorizationBuilder()
            .SetDefaultPolicy(new Microsoft.AspNetCore.Authorization.AuthorizationPolicyBuilder(ApiKeyAuthenticationHandler.SchemeName)
                .RequireAuthenticatedUser().Build());

        services.AddExceptionHandler<ApiExceptionHandler>();
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true); // so bad JSON reaches the handler
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.DictionaryKeyPolicy = null;
        });
        services.Configure<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>(o => o.AddServerHeader = false);

        services.AddGpudHealthChecks();
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o =>
        {
            o.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "gpud",
                Version = "v1",
                Description = "OpenAI-compatible fine-tuning and inference on your own GPUs. Paths and objects follow " +
                              "OpenAI's API; fields marked as gpud extensions are additions.",
            });
            o.AddSecurityDefinition("bearer", new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "An API key from Gpud:ApiKeys.",
            });
            o.AddSecurityRequirement(document => new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference("bearer", document)] = [],
            });
            o.SupportNonNullableReferenceTypes();
            o.NonNullableReferenceTypesAsRequired();
            o.OperationFilter<Api.OpenApi.DeclaredRequestBodyFilter>();
            var xml = Path.Combine(AppContext.BaseDirectory, "gpud.xml");
            if (File.Exists(xml)) o.IncludeXmlComments(xml);
        });
        return services;
    }

    private static JsonSerializerOptions Json(IServiceProvider services) =>
        services.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
}
