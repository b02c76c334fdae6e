using Gpud.Engine.Training;
using Gpud.Services.Files;
using Gpud.Services.Models;

namespace Gpud.Services.FineTuning;

/// <summary>
/// Reads a job's JSONL file into training sequences with its model's tokenizer and chat template. Validation and the
/// run each read it: a queued job may wait for hours, and re-encoding is cheap next to training on it.
/// </summary>
internal static class JobData
{
    public static TrainingSet Load(BaseModel model, FilesService files, string project, string fileId, string param, int maxSequenceLength, bool requireMinimum,
        TrainingObjective objective)
    {
        var (_, content) = files.OpenContent(project, fileId);
        using (content)
        {
            var chat = model.ChatTemplate is null ? null : model.Chat();
            var encoder = new ExampleEncoder(model.Tokenizer, chat, Math.Min(maxSequenceLength, model.Config.MaxPositionEmbeddings));
            return TrainingData.Load(content, encoder, param, requireMinimum, objective);
        }
    }
}
