// The image file as guest data reaches it (DESIGN.md "Overlap check on every host write"): mappings and fresh
// runs hand out this view, so every guest-data write is checked against the metadata before it lands and
// is counted for the next write-order barrier.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>A view of the image file whose writes pass the overlap guard. Does not own the file.</summary>
    private sealed class Qcow2DataStorage : StorageWrapper
    {
        private readonly Qcow2Image _image;

        public Qcow2DataStorage(Qcow2Image image) : base(image.Storage) => _image = image;

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            _image.CheckDataWrite(offset, data.Length);
            Inner.WriteAt(offset, data);
            _image.NoteDataWrite();
        }

        public override void WriteZeroes(long offset, long length)
        {
            _image.CheckDataWrite(offset, length);
            Inner.WriteZeroes(offset, length);
            _image.NoteDataWrite();
        }

        public override void Discard(long offset, long length)
        {
            _image.CheckDataWrite(offset, length);
            Inner.Discard(offset, length);
            _image.NoteDataWrite();
        }

        public override void Preallocate(long offset, long length)
        {
            _image.CheckDataWrite(offset, length);
            Inner.Preallocate(offset, length);
            _image.NoteDataWrite();
        }

        public override void SetLength(long length) => throw new InvalidOperationException("guest data never resizes the image file");

        public override void Dispose() { } // the image owns the file
    }
}
