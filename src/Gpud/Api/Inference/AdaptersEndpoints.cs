using System.Security.Claims;
using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Engine.Lora;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Gpud.Services.Inference;
using Gpud.Storage.Adapters;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Inference;

/// <summary><c>POST /v1/adapters</c> (gpud extension): upload a PEFT LoRA adapter trained elsewhere; it is then a model.</summary>
internal static class AdaptersEndpoints
{
    public static RouteGroupBuilder MapAdapters(this RouteGroupBuilder v1)
    {
        v1.MapPost("/adapters", Upload).WithTags("Adapters")
            .Accepts<AdapterUploadForm>("multipart/form-data")
            .DisableAntiforgery()
            .WithName("createAdapter")
            .WithSummary("Upload a PEFT adapter (multipart: name, base_model, and the files adapter_config.json and adapter_model.safetensors); it is then callable as 'name'.");
        return v1;
    }

    private static async Task<Ok<AdapterObject>> Upload(HttpContext context, ClaimsPrincipal user, AdaptersService adapters, FilesLimits limits)
    {
        if (!context.Request.HasFormContentType) throw new Files.UnsupportedMediaTypeException(context.Request.ContentType);
        if (context.Request.ContentLength > limits.MaxUploadBytes) throw new GpudException(ErrorKind.PayloadTooLarge, $"The upload exceeds {limits.MaxUploadBytes} bytes.", "file");
        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        var config = form.Files.FirstOrDefault(f => f.FileName == PeftAdapter.ConfigFile || f.Name == "adapter_config");
        var weights = form.Files.FirstOrDefault(f => f.FileName == PeftAdapter.WeightsFile || f.Name == "adapter_model");
        if (config is null || weights is null)
            throw GpudException.Invalid($"Send both files: {PeftAdapter.ConfigFile} and {PeftAdapter.WeightsFile}.", "file");
        var record = await adapters.ImportAsync(user.Project(), form["name"], form["base_model"], async directory =>
        {
            foreach (var (file, target) in new[] { (config, PeftAdapter.ConfigFile), (weights, PeftAdapter.WeightsFile) })
            {
                await using var output = File.Create(Path.Combine(directory, target));
                await file.CopyToAsync(output, context.RequestAborted);
            }
        });
        return TypedResults.Ok(AdapterObject.From(record));
    }
}

public sealed record AdapterUploadForm(string Name, string BaseModel, IFormFile AdapterConfig, IFormFile AdapterModel);

/// <summary>An uploaded adapter: call it with <c>model</c> = <see cref="Name"/>.</summary>
public sealed record AdapterObject(string Id, string Object, string Name, string BaseModel, int Rank, IReadOnlyList<string> TargetModules, long Bytes, long CreatedAt)
{
    public static AdapterObject From(AdapterRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return new AdapterObject(record.Id, "adapter", record.Name, record.BaseModel, record.Rank,
            JsonSerializer.Deserialize<List<string>>(record.TargetModules) ?? [], record.Bytes, record.CreatedAt);
    }
}
