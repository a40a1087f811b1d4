// File names stored in images (StoredFileNames): what is refused and with which kind, what resolves where,
// which paths count as inside an image's folder, and how names are shown in messages.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;

namespace VDisk.Engine.Tests.Chain;

public class StoredFileNamesTests
{
    private const string Image = "/images/vm/top.qcow2";

    [Theory]
    [InlineData("", VDiskErrorKind.Corrupt, "empty")]
    [InlineData("a\0b", VDiskErrorKind.Corrupt, "NUL")]
    [InlineData("b\uFFFDr.raw", VDiskErrorKind.Unsupported, "UTF-8")]
    [InlineData("json:{\"file.filename\":\"/etc/passwd\"}", VDiskErrorKind.Unsupported, "JSON")]
    [InlineData("nbd://host:10809/export", VDiskErrorKind.Unsupported, "protocol")]
    public void NamesNoFileCanHaveAreErrorsAboutTheImage(string stored, VDiskErrorKind kind, string mentions)
    {
        var e = Assert.Throws<VDiskException>(() => StoredFileNames.Resolve(Image, stored, "backing file name"));
        Assert.Equal(kind, e.Kind);
        Assert.Equal(Image, e.Path);
        Assert.Contains("backing file name", e.Message);
        Assert.Contains(mentions, e.Message);
    }

    [Fact]
    public void NamesLongerThanPathMaxAreCorrupt()
    {
        Assert.Equal("/images/vm/" + new string('a', 4000), StoredFileNames.Resolve(Image, new string('a', 4000), "name"));
        var e = Assert.Throws<VDiskException>(() => StoredFileNames.Resolve(Image, new string('a', StoredFileNames.MaxNameBytes + 1), "name"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("4096 bytes long", e.Message);
        Assert.True(e.Message.Length < 400, "the message shows only the start of the name");
    }

    [Theory]
    [InlineData("base.qcow2", "/images/vm/base.qcow2")]
    [InlineData("../templates/base.qcow2", "/images/templates/base.qcow2")]
    [InlineData("/srv/base.qcow2", "/srv/base.qcow2")]
    [InlineData("with\nnewline", "/images/vm/with\nnewline")]
    public void OtherNamesResolveAgainstTheImagesFolder(string stored, string expected)
        => Assert.Equal(expected, StoredFileNames.Resolve(Image, stored, "backing file name"));

    [Theory]
    [InlineData("/images/vm/disk-flat.vmdk", true)]
    [InlineData("/images/vm/sub/disk-flat.vmdk", true)]
    [InlineData("/images/vm/../vm/disk-flat.vmdk", true)]
    [InlineData("/images/other/disk.raw", false)]
    [InlineData("/images/vm-other/disk.raw", false)]
    [InlineData("/etc/passwd", false)]
    public void InsideTheFolderMeansBelowIt(string path, bool inside)
        => Assert.Equal(inside, StoredFileNames.IsInFolderOf(Image, path));

    [Fact]
    public void NamesAreShownWithControlCharactersEscapedAndShortened()
    {
        Assert.Equal("a\\nb\\0c\\x1b[2J\\t", StoredFileNames.Printable("a\nb\0c\u001b[2J\t"));
        string shown = StoredFileNames.Printable(new string('x', 5000));
        Assert.StartsWith(new string('x', 160), shown);
        Assert.EndsWith("... (5000 characters)", shown);
    }
}
