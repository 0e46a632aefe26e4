module github.com/miekg/pkcs11

go 1.12
