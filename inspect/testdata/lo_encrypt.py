# Writes Office documents with LibreOffice (headless, through UNO): for each argument
# "PATH|FILTER|KIND|PASSWORD" a new document of KIND (swriter or scalc) with one line of text,
# stored with FILTER, encrypted with PASSWORD unless it is empty. Used by the inspect tests
# (python3-uno and libreoffice-writer-nogui, libreoffice-calc-nogui).
#
#   /usr/bin/python3 lo_encrypt.py PROFILE_DIR 'out.doc|MS Word 97|swriter|secret' ...
import os
import subprocess
import sys
import time

import uno
from com.sun.star.beans import PropertyValue


def prop(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


def main():
    profile = os.path.abspath(sys.argv[1])
    pipe = "sealgate_inspect_%d" % os.getpid()
    soffice = subprocess.Popen(
        ["soffice", "--headless", "--invisible", "--norestore", "--nologo",
         "-env:UserInstallation=file://" + profile, "--accept=pipe,name=%s;urp;" % pipe],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        ctx = None
        for _ in range(600):
            try:
                ctx = resolver.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe)
                break
            except Exception:
                time.sleep(0.1)
        if ctx is None:
            sys.exit("LibreOffice did not start")
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        for spec in sys.argv[2:]:
            path, flt, kind, password = spec.split("|")
            doc = desktop.loadComponentFromURL("private:factory/" + kind, "_blank", 0, (prop("Hidden", True),))
            if kind == "swriter":
                doc.Text.setString("hello sealgate")
            else:
                doc.Sheets.getByIndex(0).getCellByPosition(0, 0).setString("hello sealgate")
            args = [prop("FilterName", flt), prop("Overwrite", True)]
            if password:
                args.append(prop("Password", password))
            doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(path)), tuple(args))
            doc.close(True)
        try:
            desktop.terminate()
        except Exception:
            pass
    finally:
        try:
            soffice.wait(timeout=30)
        except subprocess.TimeoutExpired:
            soffice.kill()
            soffice.wait()


main()
