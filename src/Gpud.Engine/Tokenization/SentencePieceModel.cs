using System.Text;
using Gpud.Engine.Models;

namespace Gpud.Engine.Tokenization;

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a protobuf <c>ModelProto</c>, field numbers from
/// sentencepiece_model.proto) that BPE encoding needs: pieces with scores and types, and the normalizer flags.
/// </summary>
internal sealed class SentencePieceModel
{
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int Control = 3;
    public const int UserDefined = 4;
    public const int Byte = 6;

    public List<(string Piece, float Score, int Type)> Pieces { get; } = [];

    public bool IsBpe { get; private set; }

    public bool ByteFallback { get; private set; }

    public int UnknownId { get; private set; }

    public int BosId { get; private set; } = 1;

    public int EosId { get; private set; } = 2;

    public string NormalizerName { get; private set; } = "nmt_nfkc";

    public bool AddDummyPrefix { get; private set; } = true;

    public bool RemoveExtraWhitespaces { get; private set; } = true;

    public bool EscapeWhitespaces { get; private set; } = true;

    public static SentencePieceModel Read(string path)
    {
        var model = new SentencePieceModel();
        try
        {
            var reader = new Reader(File.ReadAllBytes(path));
            while (!reader.AtEnd)
            {
                var (field, wire) = reader.Tag();
                switch (field)
                {
                    case 1: model.ReadPiece(reader.Message()); break;
                    case 2: model.ReadTrainer(reader.Message()); break;
                    case 3: model.ReadNormalizer(reader.Message()); break;
                    default: reader.Skip(wire); break;
                }
            }
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidDataException)
        {
            throw new ModelLoadException($"{path} is not a valid SentencePiece model ({e.Message}).", e);
        }
        return model;
    }

    private void ReadPiece(Reader r)
    {
        string piece = "";
        float score = 0;
        var type = Normal;
        while (!r.AtEnd)
        {
            var (field, wire) = r.Tag();
            switch (field)
            {
                case 1: piece = r.String(); break;
                case 2: score = r.Float(); break;
                case 3: type = (int)r.Varint(); break;
                default: r.Skip(wire); break;
            }
        }
        Pieces.Add((piece, score, type));
    }

    private void ReadTrainer(Reader r)
    {
        while (!r.AtEnd)
        {
            var (field, wire) = r.Tag();
            switch (field)
            {
                case 3: IsBpe = r.Varint() == 2; break;
                case 35: ByteFallback = r.Varint() != 0; break;
                case 40: UnknownId = (int)r.Varint(); break;
                case 41: BosId = (int)r.Varint(); break;
                case 42: EosId = (int)r.Varint(); break;
                default: r.Skip(wire); break;
            }
        }
    }

    private void ReadNormalizer(Reader r)
    {
        while (!r.AtEnd)
        {
            var (field, wire) = r.Tag();
            switch (field)
            {
                case 1: NormalizerName = r.String(); break;
                case 3: AddDummyPrefix = r.Varint() != 0; break;
                case 4: RemoveExtraWhitespaces = r.Varint() != 0; break;
                case 5: EscapeWhitespaces = r.Varint() != 0; break;
                default: r.Skip(wire); break;
            }
        }
    }

    /// <summary>A minimal protobuf wire-format reader.</summary>
    private sealed class Reader(byte[] data, int start = 0, int end = -1)
    {
        private readonly int _end = end < 0 ? data.Length : end;
        private int _position = start;

        public bool AtEnd => _position >= _end;

        public (int Field, int Wire) Tag()
        {
            var tag = Varint();
            return ((int)(tag >> 3), (int)(tag & 7));
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                var b = data[_position++];
                value |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return value;
            }
            throw new InvalidDataException("malformed varint");
        }

        public float Float()
        {
            var value = BitConverter.ToSingle(data, _position);
            _position += 4;
            return value;
        }

        public string String()
        {
            var length = (int)Varint();
            var value = Encoding.UTF8.GetString(data, _position, length);
            _position += length;
            return value;
        }

        public Reader Message()
        {
            var length = (int)Varint();
            if (length < 0 || _position + length > _end) throw new InvalidDataException("truncated message");
            var message = new Reader(data, _position, _position + length);
            _position += length;
            return message;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _position += 8; break;
                case 2:
                    var length = (int)Varint(); // read before updating _position: `_position += Varint()` would lose the length's bytes
                    _position += length;
                    break;
                case 5: _position += 4; break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
        }
    }
}
