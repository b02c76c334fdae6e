using System.Text.Json;
using Gpud.Api.Errors;
using Gpud.Services.Batches;
using Gpud.Services.Errors;

namespace Gpud.Api.Batches;

/// <summary>Turns a batch request's client errors into the answer its HTTP route would have given.</summary>
internal static class BatchAnswers
{
    public static async Task<BatchAnswer> Answer(JsonSerializerOptions json, Func<Task<BatchAnswer>> answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        try
        {
            return await answer();
        }
        catch (GpudException e)
        {
            var status = ApiErrors.StatusFor(e.Kind);
            return new BatchAnswer(status, JsonSerializer.Serialize(ApiErrors.Envelope(status, e.Message, e.Param, e.Code), json));
        }
    }

    /// <summary>A batch answers whole: a line asking to stream is a client error.</summary>
    public static GpudException NoStreaming() =>
        GpudException.Invalid("Invalid value for 'stream': a batch request cannot stream; leave it out or set it to false.", "stream", "invalid_value");
}
