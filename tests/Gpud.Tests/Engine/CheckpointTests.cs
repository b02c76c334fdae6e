using System.Text;
using Gpud.Engine.Models;
using Gpud.Engine.Weights;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class CheckpointTests
{
    [Fact]
    public void Bf16_f16_and_f32_tensors_read_back_with_their_values()
    {
        using var dir = new TempDir();
        var path = dir["t.safetensors"];
        // 1.5 and -2 are exact in every format: bf16 0x3FC0/0xC000, f16 0x3E00/0xC000, f32 0x3FC00000/0xC0000000.
        WriteSafetensors(path, """{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}}""",
            [0xC0, 0x3F, 0x00, 0xC0, 0x00, 0x3E, 0x00, 0xC0, 0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x00, 0xC0]);

        using var file = new SafetensorsFile(path);
        foreach (var name in new[] { "a", "b", "c" })
        {
            using var t = file.Read(name, ScalarType.Float32);
            Assert.Equal(new[] { 1.5f, -2f }, t.data<float>().ToArray());
        }
        Assert.Equal([1L, 2L], file.ShapeOf("c"));
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", "outside the file")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", "needs 12")]
    [InlineData("""{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""", "unsupported dtype")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}""", "invalid shape")]
    [InlineData("""{"a":{"dtype":"F32"}}""", "needs 'dtype', 'shape'")]
    [InlineData("""{"a":""", "not valid JSON")]
    public void Malformed_headers_are_reported_not_crashed_on(string header, string expected)
    {
        using var dir = new TempDir();
        var path = dir["bad.safetensors"];
        WriteSafetensors(path, header, new byte[8]);
        var e = Assert.Throws<ModelLoadException>(() => new SafetensorsFile(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_header_length_beyond_the_file_is_reported()
    {
        using var dir = new TempDir();
        var path = dir["short.safetensors"];
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(1_000_000L), .. "{}"u8]);
        Assert.Contains("invalid safetensors header length", Assert.Throws<ModelLoadException>(() => new SafetensorsFile(path)).Message);
    }

    [Fact]
    public void A_missing_shard_is_named_when_the_checkpoint_opens()
    {
        using var dir = new TempDir();
        foreach (var file in Directory.EnumerateFiles(Repo.File("tests/fixtures/models/qwen2-tiny")))
            File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        File.Delete(dir["model-00002-of-00002.safetensors"]);

        var e = Assert.Throws<ModelLoadException>(() => Checkpoint.Open(dir.Path));
        Assert.Contains("shard model-00002-of-00002.safetensors is missing", e.Message);
    }

    [Fact]
    public void An_unsupported_architecture_is_named()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["config.json"], """{"architectures":["GPT2LMHeadModel"],"hidden_size":8}""");
        var e = Assert.Throws<ModelLoadException>(() => ModelConfig.Load(dir.Path));
        Assert.Contains("GPT2LMHeadModel", e.Message);
    }

    [Fact]
    public void Generation_config_end_tokens_join_the_configs_as_transformers_generate_uses_them()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["config.json"], """{"architectures":["Qwen2ForCausalLM"],"hidden_size":8,"num_attention_heads":2,"intermediate_size":8,"num_hidden_layers":1,"vocab_size":16,"eos_token_id":3}""");
        Assert.Equal([3], ModelConfig.Load(dir.Path).EosTokenIds); // no generation_config.json

        File.WriteAllText(dir["generation_config.json"], """{"eos_token_id":[5,3],"do_sample":true}""");
        Assert.Equal([3, 5], ModelConfig.Load(dir.Path).EosTokenIds);

        File.WriteAllText(dir["generation_config.json"], """{"eos_token_id":""");
        Assert.Contains("generation_config.json is not valid JSON", Assert.Throws<ModelLoadException>(() => ModelConfig.Load(dir.Path)).Message);
    }

    private static void WriteSafetensors(string path, string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((long)json.Length), .. json, .. data]);
    }
}
