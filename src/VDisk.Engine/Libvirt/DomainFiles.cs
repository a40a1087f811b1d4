// Domain XML kept in files (libvirt formatdomain documents outside a daemon, e.g. for virsh define later): read, and
// replaced atomically (a temporary file beside it, renamed over it) after copying the original to a backup.
namespace VDisk.Engine.Libvirt;

/// <summary>Reads and writes domain XML files.</summary>
public static class DomainFiles
{
    /// <summary>Reads and parses the domain XML file at <paramref name="path"/>.</summary>
    public static DomainXml Load(string path)
    {
        if (!File.Exists(path)) throw new Core.VDiskException(Core.VDiskErrorKind.NotFound, path, $"{path}: no such file.");
        return DomainXml.Parse(File.ReadAllText(path), path);
    }

    /// <summary>
    /// Replaces the file at <paramref name="path"/> with <paramref name="domain"/>'s text. With <paramref name="backup"/>
    /// the original is first copied to PATH.YYYYMMDDTHHMMSS[.N].bak; returns the backup's path, or null.
    /// </summary>
    public static string? Save(string path, DomainXml domain, bool backup)
    {
        string? backupPath = null;
        if (backup)
        {
            string stem = $"{path}.{DateTime.Now:yyyyMMdd'T'HHmmss}";
            backupPath = stem + ".bak";
            for (int n = 1; File.Exists(backupPath); n++) backupPath = $"{stem}.{n}.bak";
            File.Copy(path, backupPath);
        }
        string temporary = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.vdisk-{Guid.NewGuid():N}.tmp");
        File.WriteAllText(temporary, domain.Text, new System.Text.UTF8Encoding(false));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temporary, File.GetUnixFileMode(path));
        File.Move(temporary, path, overwrite: true);
        return backupPath;
    }
}
